"""Visual reprogramming (VP, AR, AttrVR, BioMedVR): programs, attribute files, heads, loss, configs.

Checked against hand computations in numpy (the PyTorch-transcription parity tests live in their
own file): the padding and watermark programs pixel by pixel, the top-k attribute head and its
gradient, the reference's sentence sampling, BioMedVR's gate, fusion and confusion-suppression
hinge, the per-step cosine against torch's ``CosineAnnealingLR``, every attribute-file error, the
released attribute files (``shared_dir``; skipped when absent), the stored/effective parameter
counts at full size (``jax.eval_shape``, no weights) and the config values against the spec.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biomedjax.data import catalog
from biomedjax.methods import METHODS, attributes, biomedvr, programs, vr_heads
from biomedjax.methods.base import Backbone, Task
from biomedjax.models import config as model_config
from biomedjax.models import families
from biomedjax.models.clip import CLIP
from biomedjax.train import optim
from configs import ar as ar_config
from configs import attrvr as attrvr_config
from configs import biomedvr as biomedvr_config
from configs import vp as vp_config
from tests import tiny_backbone, vr_attributes

CLASSES = tiny_backbone.CLASSNAMES
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
CONFIGS = {"vp": vp_config, "ar": ar_config, "attrvr": attrvr_config, "biomedvr": biomedvr_config}


@pytest.fixture(scope="module")
def attr_dir(tmp_path_factory):
  return vr_attributes.write(tmp_path_factory.mktemp("attributes"), "btmri", CLASSES)


def _method(name, backbone, attr_dir, classes=CLASSES, **overrides):
  c = CONFIGS[name].get_config("dataset=btmri,shots=16")
  if "attributes_dir" in c.method:
    c.method.attributes_dir = str(attr_dir)
  c.method.update(overrides)
  return METHODS[name].build(backbone, Task(tuple(classes)), c.method)


# -- programs -------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [192, 193])
def test_padding_program_by_hand(size):
  rng = np.random.default_rng(0)
  x = rng.random((2, size, size, 3)).astype(np.float32)
  p = rng.normal(size=(3, 224, 224)).astype(np.float32)
  mask = programs.frame_mask("padding", size, 16)  # 193: frame 16 left/top, 15 right/bottom
  out = np.asarray(programs.padding_program(jnp.asarray(x), jnp.asarray(p), mask, MEAN, STD))
  lo = int((224 - size + 1) / 2)  # the reference's int((224 - S + 1) / 2) left/top pad
  canvas = np.zeros((2, 224, 224, 3), np.float32)
  canvas[:, lo:lo + size, lo:lo + size] = x
  frame = np.ones((224, 224), bool)
  frame[lo:lo + size, lo:lo + size] = False
  expect = canvas + frame[..., None] / (1 + np.exp(-p.transpose(1, 2, 0)))
  expect = (expect - np.array(MEAN)) / np.array(STD)
  np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)
  assert (mask[..., 0] == frame).all()  # the reference's mask: 1 - centre(S)
  assert size != 192 or programs.effective_size(mask) == 39_936


def test_watermark_program_by_hand():
  rng = np.random.default_rng(1)
  x = rng.random((2, 224, 224, 3)).astype(np.float32)
  p = rng.normal(size=(3, 224, 224)).astype(np.float32)
  mask = programs.frame_mask("watermark", 224, 30)
  out = np.asarray(programs.watermark_program(jnp.asarray(x), jnp.asarray(p), mask, MEAN, STD))
  frame = np.ones((224, 224), bool)
  frame[30:194, 30:194] = False
  expect = (x - np.array(MEAN)) / np.array(STD) + frame[..., None] * p.transpose(1, 2, 0)
  np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)
  assert programs.effective_size(mask) == 69_840


@pytest.mark.parametrize("kind,size,border,match", [
    ("padding", 192, 17, r"image_size \+ 2 \* border = 226 > 224"),
    ("padding", 224, 16, "must be below 224"),
    ("watermark", 192, 30, "set image_size=224"),
    ("watermark", 224, 112, "leaves no centre"),
    ("padding", 192, 0, "at least 1 pixel"),
    ("frame", 192, 16, "program='frame'"),
])
def test_program_errors(kind, size, border, match):
  with pytest.raises(ValueError, match=match):
    programs.frame_mask(kind, size, border)


def test_image_size_mismatch_is_one_error(tiny, attr_dir):
  backbone, _ = tiny
  method = _method("ar", backbone, attr_dir)
  trainable = method.init(jax.random.key(0), None)
  with pytest.raises(ValueError, match="set config.data.image_size=192"):
    method.program_images(trainable, jnp.zeros((1, 224, 224, 3)))
  with pytest.raises(ValueError, match="padding program"):
    _method("ar", backbone, attr_dir, border=20)


# -- attribute files, sampling, heads ------------------------------------------------------

def test_reference_sampling():
  kept = [[f"sentence number {i} of class a" for i in range(5)],
          [f"sentence number {i} of class b" for i in range(20)],
          [f"sentence number {i} of class c" for i in range(30)]]
  out = attributes.sample(kept, 20, np.random.default_rng(7))
  rng = np.random.default_rng(7)  # the same stream by hand: classes in label order
  assert out[0] == [kept[0][i] for i in rng.choice(5, 20, replace=True)]
  assert out[1] == [kept[1][i] for i in rng.choice(20, 20, replace=True)]  # n == m: replacement
  assert out[2] == [kept[2][i] for i in rng.choice(30, 20, replace=False)]
  assert len(set(out[2])) == 20 and len(set(out[1])) < 20
  assert attributes.sample(kept, 20, np.random.default_rng(7), "unique") == kept
  with pytest.raises(ValueError, match="attr_sampling='all'"):
    attributes.sample(kept, 20, np.random.default_rng(0), "all")


def test_attribute_head_is_the_top_k_mean_with_gradient_through_it():
  rng = np.random.default_rng(2)
  feats = rng.normal(size=(3, 8)).astype(np.float32)
  text = rng.normal(size=(4, 6, 8)).astype(np.float32)
  text /= np.linalg.norm(text, axis=-1, keepdims=True)
  valid = np.ones((4, 6), bool)
  out = vr_heads.attribute_logits(jnp.asarray(feats), jnp.asarray(text), valid, 100.0, 3)
  s = 100 * np.einsum("bd,cnd->bcn", feats / np.linalg.norm(feats, axis=-1, keepdims=True), text)
  np.testing.assert_allclose(out, np.sort(s, -1)[..., -3:].mean(-1), rtol=1e-5)
  # d logit[b, c] / d text: nonzero on exactly the selected k sentences of that class.
  g = jax.grad(lambda t: vr_heads.attribute_logits(jnp.asarray(feats), t, valid, 100.0, 3)[0, 1])(
      jnp.asarray(text))
  used = np.abs(np.asarray(g)).sum(-1) > 0
  assert used[1].sum() == 3 and not used[[0, 2, 3]].any()
  assert set(np.flatnonzero(used[1])) == set(np.argsort(s[0, 1])[-3:])
  # Ragged classes ("unique"): class 0 has 2 sentences, so it averages min(3, 2) of them.
  valid[0, 2:] = False
  out = vr_heads.attribute_logits(jnp.asarray(feats), jnp.asarray(text), valid, 100.0, 3)
  np.testing.assert_allclose(out[:, 0], np.sort(s[:, 0, :2], -1).mean(-1), rtol=1e-5)
  np.testing.assert_allclose(out[:, 1:], np.sort(s[:, 1:], -1)[..., -3:].mean(-1), rtol=1e-5)


def test_label_prompts():
  assert vr_heads.label_sentences(("normal_OCT scan",)) == [["This is a photo of normal OCT scan."]]


def test_sentences_the_methods_use(tiny, attr_dir):
  backbone, _ = tiny
  assert _method("vp", backbone, attr_dir).sentences == {
      "label": [[f"This is a photo of {c.replace('_', ' ')}."] for c in CLASSES]}
  files = {h: json.loads((attr_dir / f"btmri_{h}.json").read_text()) for h in ("des", "dist")}
  unique = _method("attrvr", backbone, attr_dir, attr_sampling="unique").sentences
  assert unique == {h: [files[h][c.replace(" ", "_")] for c in CLASSES] for h in files}
  drawn = _method("biomedvr", backbone, attr_dir, attr_seed=5).sentences
  assert list(drawn) == ["des", "dist", "confuse"]
  for i, head in enumerate(("des", "dist")):  # a stream per head, classes in label order
    rng = np.random.default_rng([5, i])       # 20 of 5 each
    for c, got in zip(CLASSES, drawn[head]):
      kept = files[head][c.replace(" ", "_")]
      assert got == [kept[i] for i in rng.choice(5, 20, replace=True)]
  assert _method("biomedvr", backbone, attr_dir, attr_seed=6).sentences != drawn


def _write(directory, head, data):
  directory.mkdir(exist_ok=True)
  (directory / f"btmri_{head}.json").write_text(json.dumps(data))


def test_attribute_file_errors(tiny, tmp_path):
  backbone, _ = tiny
  tok = backbone.tokenizer
  good = {c.replace(" ", "_").upper(): [f"a photo of the {c} and more"] for c in CLASSES}
  d = tmp_path / "a"

  def read():
    return attributes.read_heads(str(d), "btmri", ("des",), CLASSES, tok, 20, 0)

  with pytest.raises(FileNotFoundError, match="btmri_des.json not found"):
    read()
  _write(d, "des", good)  # keys matched case-insensitively
  assert [len(s) for s in read()["des"]] == [20] * 4
  _write(d, "des", {k: v for k, v in good.items() if not k.startswith("NORMAL")})
  with pytest.raises(ValueError, match=r"btmri_des.json: no entry for class 'normal brain'"):
    read()
  _write(d, "des", {**good, "NORMAL_BRAIN": ["too short", "also short"]})
  with pytest.raises(ValueError, match="class 'NORMAL_BRAIN' has no sentence of at least 20"):
    read()
  long = "a photo of the brain " * 70
  _write(d, "des", {**good, "GLIOMA_TUMOR": ["a fine sentence of the glioma", long]})
  with pytest.raises(ValueError, match=r"btmri_des.json: a sentence of class 'glioma tumor' has "
                                       r"\d+ tokens, more than the text tower's context of 256"):
    read()
  _write(d, "des", {**good, "extra_class": ["an extra class with a sentence"]})
  with pytest.raises(ValueError, match=r"btmri_des.json has 5 classes but the dataset has 4.*"
                                       r"extra_class"):
    read()
  _write(d, "des", ["not", "an", "object"])
  with pytest.raises(ValueError, match="expected a JSON object"):
    read()
  with pytest.raises(ValueError, match="--config.method.attributes_dir"):
    _method("attrvr", tiny[0], "")


# -- BioMedVR: gate, fusion, hinge, one batched forward --------------------------------------

def test_confusion_suppression_by_hand():
  rng = np.random.default_rng(3)
  fused, neg = rng.normal(size=(2, 5, 4)).astype(np.float32) * 3
  y = np.array([0, 1, 2, 3, 1])
  for exclude in (False, True):
    n = neg.copy()
    if exclude:
      n[np.arange(5), y] = -np.inf
    expect = np.maximum(n.max(-1) - fused[np.arange(5), y] + 0.5, 0).mean()
    got = biomedvr.confusion_suppression(jnp.asarray(fused), jnp.asarray(neg), jnp.asarray(y),
                                         0.5, exclude)
    assert float(got) == pytest.approx(min(expect, 1e3), rel=1e-6)


def test_biomedvr_forward_loss_and_gradients(tiny, attr_dir):
  backbone, params = tiny
  method = _method("biomedvr", backbone, attr_dir)
  assert list(method.sentences) == ["des", "dist", "confuse"]
  assert [len(s) for s in method.sentences["confuse"]] == [20] * 4
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = method.init(jax.random.key(0), frozen)
  assert sorted(trainable) == ["gate", "program_neg", "program_pos"]
  np.testing.assert_array_equal(trainable["gate"], [1.0, 1.0])
  trainable["program_pos"] = jax.random.normal(jax.random.key(1), (3, 224, 224))
  trainable["gate"] = jnp.array([0.3, -0.2])
  images = jax.random.uniform(jax.random.key(2), (2, 192, 192, 3))
  batch = {"image": images, "label": jnp.array([0, 3])}

  @jax.jit
  def run(trainable, frozen, batch):
    x = method.program_images(trainable, batch["image"])
    feats = method.image_features(trainable, frozen, batch["image"])  # one pass over 2B images
    (loss, aux), grads = method.value_and_grad(trainable, frozen, batch, jax.random.key(0))
    return x, feats, method.logits(trainable, frozen, batch["image"]), loss, aux, grads

  x, feats, logits, loss, aux, grads = run(trainable, frozen, batch)
  assert x.shape == (2, 2, 224, 224, 3) and feats.shape == (2, 2, 32)
  for i, name in enumerate(("program_pos", "program_neg")):  # the order (δ+, δ−)
    np.testing.assert_allclose(x[i], programs.padding_program(
        images, trainable[name], method.mask, MEAN, STD), rtol=1e-6, atol=1e-6)
  scale = float(jnp.exp(params["logit_scale"]))

  def head(name, f):
    return vr_heads.attribute_logits(f, frozen[name], np.ones((4, 20), bool), scale, 3)

  pos = 0.5 * head("des", feats[0]) + 0.5 * head("dist", feats[0])
  neg = head("confuse", feats[1])
  w = np.exp([0.3, -0.2]) / np.exp([0.3, -0.2]).sum()
  fused = w[0] * pos + w[1] * neg
  np.testing.assert_allclose(logits, fused, rtol=2e-5, atol=2e-5)
  ce = -jax.nn.log_softmax(fused)[np.arange(2), np.array([0, 3])].mean()
  cs = biomedvr.confusion_suppression(fused, neg, batch["label"], 0.5)
  assert float(aux["ce"]) == pytest.approx(float(ce), rel=1e-5)
  assert float(aux["cs"]) == pytest.approx(float(cs), rel=1e-5)
  assert float(loss) == pytest.approx(float(ce + 0.3 * cs), rel=1e-5)
  for name in ("program_pos", "program_neg"):
    g = np.abs(np.asarray(grads[name])).sum(0)
    assert g[:16].sum() > 0 and g[16:208, 16:208].sum() == 0, name  # frame only
  assert np.abs(np.asarray(grads["gate"])).sum() > 0


@pytest.mark.parametrize("gating,shape", [("per_class", (4, 2)), ("per_sample", None)])
def test_gate_variants(tiny, attr_dir, gating, shape):
  backbone, params = tiny
  method = _method("biomedvr", backbone, attr_dir, gating=gating)
  trainable = method.init(jax.random.key(0), None)
  if shape:
    assert trainable["gate"].shape == shape
  else:
    assert {k: v.shape for k, v in trainable["gate"].items()} == {
        "w1": (32, 128), "b1": (128,), "w2": (128, 2), "b2": (2,)}
  pos, neg = jnp.ones((3, 4)), jnp.zeros((3, 4))
  w = biomedvr.gate_weights(trainable["gate"], gating, jnp.ones((3, 32)))
  fused = biomedvr.fuse(pos, neg, w, gating)
  expect = w[None, :, 0] if gating == "per_class" else w[:, :1] * jnp.ones((3, 4))
  np.testing.assert_allclose(fused, jnp.broadcast_to(expect, (3, 4)), rtol=1e-6)
  with pytest.raises(ValueError, match="gating='global'"):
    _method("biomedvr", backbone, attr_dir, gating="global")


# -- parameter counts at full size, schedule, configs vs spec ---------------------------------

@pytest.fixture(scope="module")
def full_clip(tmp_path_factory):
  cfg = model_config.clip_vit_b16()
  words = [w for w in tiny_backbone.WORDS if not w.startswith("##")]
  return Backbone(CLIP(cfg), families.random_tokenizer(cfg, tmp_path_factory.mktemp("bpe"), words))


@pytest.mark.parametrize("name,stored,effective", [
    ("biomedvr", 301_058, 79_874), ("attrvr", 150_528, 39_936), ("ar", 150_528, 39_936),
    ("vp", 150_528, 69_840)])
def test_parameter_counts_at_full_size(full_clip, attr_dir, name, stored, effective):
  method = _method(name, full_clip, attr_dir)
  shapes = jax.eval_shape(method.init, jax.random.key(0), None)
  assert method.parameter_counts(shapes) == {"stored": stored, "effective": effective}


def test_per_step_cosine_equals_torch():
  torch = pytest.importorskip("torch")
  c = biomedvr_config.get_config("dataset=btmri,shots=16")
  tx, schedule = optim.make_optimizer(c.optim, steps_per_epoch=2)
  total = 2 * c.optim.epochs
  p = torch.nn.Parameter(torch.zeros(1))
  opt = torch.optim.SGD([p], lr=40, momentum=0.9, weight_decay=0)
  sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
  lrs = []
  for _ in range(total):
    lrs.append(opt.param_groups[0]["lr"])
    opt.step()
    sched.step()
  ours = np.asarray(schedule(np.arange(total)))
  np.testing.assert_allclose(ours, lrs, rtol=1e-5, atol=1e-6)
  assert ours[0] == 40.0 and ours[total // 2] == pytest.approx(20.0)


@pytest.fixture(scope="module")
def spec(shared_dir):
  path = shared_dir / "spec" / "METHODS-vr.md"
  if not path.exists():
    pytest.skip(f"{path} absent")
  return " ".join(path.read_text().split())


def test_configs_equal_the_spec(spec):
  for phrase in ("torch SGD, lr 40, momentum 0.9, dampening 0, no Nesterov, weight decay 0",
                 "lr_t = 20·(1+cos(πt/T)) for t = 0..T−1, no warmup",
                 "Epochs: VP/AR/AttrVR 200, BioMedVR 400", "Batch 64 (16 when K = 1)",
                 "β = 0.3, margin 0.5", "g ∈ R², init (1,1)", "m = 20 each, k = 3",
                 "λ = 0.5", "Input size S = 192", "VP: S = 224", "16-px frame",
                 "M = 1 on a 30-px frame", "Default `attr_sampling=\"reference\"`"):
    assert phrase in spec, phrase
  for name, epochs in (("vp", 200), ("ar", 200), ("attrvr", 200), ("biomedvr", 400)):
    for shots, batch in ((16, 64), (1, 16)):
      c = CONFIGS[name].get_config(f"dataset=kneexray,shots={shots},seed=3")
      o = c.optim
      assert (o.name, o.lr, o.momentum, o.weight_decay, o.warmup_epochs, o.schedule,
              o.epochs) == ("sgd", 40.0, 0.9, 0.0, 0, "cosine_steps", epochs), name
      assert c.data.batch_size == batch
      assert (c.data.train_resize_first, c.data.random_flip, c.data.last_batch,
              c.eval.select) == (True, True, "keep", "best_test")
      m = c.method
      size, border, program = (224, 30, "watermark") if name == "vp" else (192, 16, "padding")
      assert (m.image_size, m.border, m.program, m.program_init, c.data.image_size) == (
          size, border, program, "zeros", size)
      if "m" in m:
        assert (m.m, m.k, m.attr_sampling, m.attr_lambda, m.attributes_dataset,
                m.attr_seed) == (20, 3, "reference", 0.5, "knee_xray", 3)
  m = biomedvr_config.get_config().method
  assert (m.beta, m.margin, m.cs_exclude_true, m.gating) == (0.3, 0.5, False, "shared")
  assert ar_config.get_config().method.template == "This is a photo of {}."


# -- the released attribute files (never copied into the project) ---------------------------

def _clip_tokenizer(tmp):
  import importlib.util
  spec = importlib.util.find_spec("open_clip")
  if spec is None:
    pytest.skip("open_clip is not installed (its BPE vocabulary is the reference's)")
  from biomedjax.models import bpe
  gz = next(iter(spec.submodule_search_locations)) + "/bpe_simple_vocab_16e6.txt.gz"
  return bpe.BPETokenizer(bpe.write_openclip_vocab(gz, tmp), 77)


def test_released_attribute_files(shared_dir, tmp_path):
  directory = shared_dir / "data" / "biomedvr" / "attributes"
  if not directory.is_dir():
    pytest.skip(f"{directory} absent")
  tok = _clip_tokenizer(tmp_path)
  longest = 0
  for dataset, info in catalog.DATASETS.items():
    key = attributes.attribute_key(dataset)
    for head in attributes.HEADS:
      kept = attributes.load(directory, key, head, info.classnames)
      assert [len(s) for s in kept] == [5] * info.num_classes, (key, head)
      attributes.check_lengths(tok, attributes.path(directory, key, head), info.classnames, kept)
      longest = max(longest, *attributes.token_lengths(tok, [s for c in kept for s in c]))
  assert 40 < longest <= 77, longest  # the longest released sentence fits CLIP's context
  sampled = attributes.read_heads(directory, "btmri", attributes.HEADS,
                                  catalog.DATASETS["btmri"].classnames, tok, 20, 1)
  assert all(len(s) == 20 and len(set(s)) <= 5 for h in sampled.values() for s in h)
  assert list(sampled) == list(attributes.HEADS)


def test_show_explains_inherited_options():
  """``launch.py --show`` reads option meanings from the dataclass bases' files too."""
  from biomedjax.tools import cli
  files = cli.option_sources("vp")
  assert [f.name for f in files] == ["reprogram.py", "ar.py", "vp.py"]
  meanings = cli.field_comments(*cli.option_sources("biomedvr"))
  assert {"border", "attr_sampling", "attributes_dir", "gating", "beta"} <= set(meanings)
  assert cli.option_sources("no_such_method") == []


def test_random_weight_vocabulary_holds_the_attribute_words(attr_dir):
  """A random-weight model's generated BPE vocabulary gets the sentences' words as tokens
  (otherwise character-level pieces overflow CLIP's 77-token context)."""
  from biomedjax.train import setup
  c = biomedvr_config.get_config("dataset=btmri")
  c.method.attributes_dir = str(attr_dir)
  words = attributes.vocabulary_words(c.method)
  assert {"glioma", "meningioma", "showing", "scan"} <= set(words)
  assert attributes.vocabulary_words(vp_config.get_config().method) == []
  data = type("Data", (), {"classnames": CLASSES, "novel_classnames": ()})()
  assert set(words) <= set(setup.vocabulary_words(c, data))
