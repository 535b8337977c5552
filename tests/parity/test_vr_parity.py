"""VP, AR, AttrVR and BioMedVR vs the PyTorch transcription of the references (reference_vr.py).

Same random weights on both sides: open_clip models built offline (the BiomedCLIP layout,
``CustomTextCLIP`` with a timm ViT + HF BERT, and the OpenAI layout, ``CLIP`` with QuickGELU),
converted in memory by the real mapping. The tiny towers run on a 64-pixel canvas (an S = 32
image in a 16-pixel frame for the padding program, a 8-pixel watermark frame for VP) so that all
four methods on both families stay fast; one BioMedVR step also runs at full size (OpenAI CLIP
ViT-B/16, 224 canvas, S = 192, 16-pixel frame). Programs and the gate are perturbed away from
their zero / (1, 1) inits so that frames, sigmoids and the gate's softmax are non-trivial.

Compared, to 1e-4 relative (fp32 both sides, "highest" matmul precision): the programmed images,
the logits of each head (BioMedVR: pos, neg, fused), the loss, and the gradients of every
program and of the gate. The attribute sentences are synthetic (written here), and both sides
use the sentences the method drew (``method.sentences``): Python's ``random`` draws of the
reference cannot be reproduced draw for draw.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import open_clip
import pytest
import timm
import torch
from timm.models.vision_transformer import _create_vision_transformer

from biomedjax.methods import METHODS
from biomedjax.methods.base import Backbone, Task
from biomedjax.models import bpe
from biomedjax.models import config as model_config
from biomedjax.models.clip import CLIP
from biomedjax.models.tokenizer import Tokenizer
from biomedjax.models.vocab import write_vocab
from convert.biomedclip import map_state_dict
from tests.parity import clip_fixture, method_fixture, openclip_fixture
from tests.parity.reference_vr import TorchVR

CLASSES = ("glioma tumor", "meningioma tumor", "pituitary tumor", "normal brain")
CANVAS, SIZE, BORDER, VP_PAD = 64, 32, 16, 8
POOL = ("glioma tumor brain scan lesion mass cyst edema signal rim core margin bright dark "
        "smooth irregular lobulated diffuse focal nodular solid fluid calcified necrotic "
        "cortical white matter sellar pituitary dural meningeal enhancing homogeneous "
        "ventricle midline shift normal symmetric sulci gyri").split()


def attribute_texts(classes, n=5):
  """Made-up attribute sentences (>= 20 characters), each class from its own words: on random
  weights, sentences that differ by a word or two give near-identical features, and the
  gradients through a softmax over near-equal logits would cancel to fp32 noise."""
  per = len(POOL) // len(classes)
  out = {}
  for h, head in enumerate(("des", "dist", "confuse")):
    out[head] = {}
    for j, c in enumerate(classes):
      words = POOL[j * per:(j + 1) * per]
      out[head][c.replace(" ", "_")] = [
          " ".join(words[(i + 3 * h + w) % per] for w in range(6)) for i in range(n)]
  return out


def sharpen_(model, bert_gain: float = 1.0):
  """Random weights made to give input-dependent features, so the test is well conditioned.

  Shrinks every bias and the class token (perturbed by the fixtures to ~0.1): at random weights
  they dominate the pooled features, which then point the same way for every input, the class
  logits are near-equal and the gradients (a softmax over them, the gate's a difference of two
  experts) cancel to fp32 noise (~1e-4 relative on both sides, measured against float64).
  ``bert_gain`` scales the BERT tower's matrices (not its embeddings): at init scale its [CLS]
  output hardly depends on the other tokens."""
  with torch.no_grad():
    for name, p in model.named_parameters():
      if (p.ndim == 1 and name.endswith("bias")) or "class_embedding" in name \
          or "cls_token" in name:
        p.mul_(0.05)
      elif name.startswith("text.") and p.ndim == 2 and "embeddings" not in name:
        p.mul_(bert_gain)


def write_attributes(out, classes, n=5):
  out.mkdir(parents=True, exist_ok=True)
  for head, per_class in attribute_texts(classes, n).items():
    (out / f"toy_{head}.json").write_text(json.dumps(per_class))
  return out


def vocab_words(classes):
  return sorted(set(POOL) | set("this is a photo of".split()) | set(openclip_fixture.WORDS))


@timm.models.register_model
def vit_biomedjax_vr_tiny_patch16_64(pretrained=False, **kwargs):
  v = model_config.tiny().vision
  return _create_vision_transformer("vit_base_patch16_224", pretrained=False, **dict(
      dict(img_size=CANVAS, patch_size=v.patch_size, embed_dim=v.width, depth=v.depth,
           num_heads=v.heads, mlp_ratio=v.mlp_dim / v.width), **kwargs))


def with_canvas(cfg, canvas):
  return dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, image_size=canvas))


def biomedclip_side(tmp, seed=0):
  """-> (torch model, encode_text, backbone, params): tiny BiomedCLIP layout on a 64 canvas."""
  cfg = with_canvas(model_config.tiny(), CANVAS)
  bert_dir = tmp / "bert_config"
  bert_dir.mkdir(parents=True, exist_ok=True)
  (bert_dir / "config.json").write_text(json.dumps(openclip_fixture.bert_config(cfg)))
  write_vocab(tmp, vocab_words(CLASSES), size=cfg.text.vocab_size,
              context_length=cfg.text.context_length)
  vision_cfg = {"timm_model_name": "vit_biomedjax_vr_tiny_patch16_64",
                "timm_model_pretrained": False, "timm_pool": "", "timm_proj": "linear",
                "image_size": CANVAS}
  text_cfg = {"hf_model_name": str(bert_dir), "hf_tokenizer_name": str(tmp),
              "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
              "hf_model_pretrained": False, "context_length": cfg.text.context_length}
  torch.manual_seed(seed)
  model = open_clip.model.CustomTextCLIP(cfg.embed_dim, vision_cfg, text_cfg)
  openclip_fixture.perturb_(model, seed)
  sharpen_(model, bert_gain=8.0)
  model.eval().requires_grad_(False)
  params = jax.device_put(map_state_dict({k: v.numpy() for k, v in model.state_dict().items()},
                                         cfg))
  tok = open_clip.tokenizer.HFTokenizer(str(tmp), context_length=cfg.text.context_length)
  backbone = Backbone(CLIP(cfg), Tokenizer(tmp, cfg.text.context_length))
  return model, lambda texts: model.encode_text(tok(texts)), backbone, params


def clip_side(tmp, preset="tiny_clip", canvas=CANVAS, seed=0):
  """-> (torch model, encode_text, backbone, params): the OpenAI layout (open_clip CLIP)."""
  model_cfg = clip_fixture.openclip_model_cfg(preset)
  model_cfg["vision_cfg"]["image_size"] = canvas
  torch.manual_seed(seed)
  model = open_clip.model.CLIP(**model_cfg)
  clip_fixture.perturb_(model, seed)
  sharpen_(model)
  model.eval().requires_grad_(False)
  cfg = with_canvas(model_config.PRESETS[preset](), canvas)
  params = jax.device_put(map_state_dict({k: v.numpy() for k, v in model.state_dict().items()},
                                         cfg))
  tok_dir = bpe.write_openclip_vocab(clip_fixture.OPENCLIP_BPE, tmp / "bpe")
  backbone = Backbone(CLIP(cfg), bpe.BPETokenizer(tok_dir, cfg.text.context_length))
  return model, lambda texts: model.encode_text(open_clip.tokenize(texts)), backbone, params


def method_options(kind, attr_dir, canvas=CANVAS, size=SIZE, border=BORDER, **extra):
  if kind == "vp":
    return {"program": "watermark", "image_size": canvas, "border": VP_PAD, **extra}
  opts = {"program": "padding", "image_size": size, "border": border}
  if kind in ("attrvr", "biomedvr"):  # m = 6 >= 5 sentences: the reference's with-replacement
    opts.update(attributes_dir=str(attr_dir), attributes_dataset="toy", m=6)  # draws, cheaper
  return {**opts, **extra}


def perturbed(trainable, seed):
  """Non-zero programs (N(0, 0.5)) and a gate away from (1, 1)."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, value in trainable.items():
    if name == "gate":
      out[name] = np.asarray([1.3, 0.6], np.float32)
    else:
      out[name] = (np.asarray(value) + 0.5 * rng.normal(size=np.shape(value))).astype(np.float32)
  return out


def run_both(side, kind, attr_dir, batch_size=3, seed=0, canvas=CANVAS, size=SIZE,
             border=BORDER, classes=CLASSES, **extra):
  """-> {name: (ours, reference)} for images, logits, loss and gradients."""
  if kind not in METHODS:
    pytest.skip(f"method {kind!r} is not registered yet")
  torch_model, encode_text, backbone, params = side
  method = METHODS[kind].build(backbone, Task(classes),
                         method_options(kind, attr_dir, canvas, size, border, **extra))
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = perturbed(method.init(jax.random.key(0), frozen), seed)
  rng = np.random.default_rng(seed)
  side_px = canvas if kind == "vp" else size
  images = rng.uniform(size=(batch_size, side_px, side_px, 3)).astype(np.float32)
  labels = (np.arange(batch_size) % len(classes)).astype(np.int32)
  batch = {"image": images, "label": labels}

  @jax.jit
  def ours(trainable, frozen, batch):  # one compilation for everything compared
    key = jax.random.key(0)
    (loss, aux), grads = jax.value_and_grad(method.loss, has_aux=True)(
        trainable, frozen, batch, key)
    logits, extras = method.train_logits(trainable, frozen, batch, key)
    return (loss, aux, grads, logits, extras, method.logits(trainable, frozen, batch["image"]),
            method.program_images(trainable, batch["image"]))
  loss, aux, grads, logits, extras, eval_logits, program_images = ours(trainable, frozen, batch)

  names = [n for n in trainable if n != "gate"]
  ref = TorchVR(torch_model, encode_text, kind, [trainable[n] for n in names], method.sentences,
                canvas, size, pad=VP_PAD, k=getattr(method.opts, "k", 3),
                gate=trainable.get("gate"))
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
  ref_loss, out = ref.loss(x, torch.from_numpy(labels).long())
  ref_loss.backward()
  with torch.no_grad():
    ref_images = ref.program_images(x).permute(0, 1, 3, 4, 2).numpy()
  pairs = {"program_images": (program_images, ref_images),
           "logits": (logits, out["logits"].detach().numpy()),
           "eval_logits": (eval_logits, out["logits"].detach().numpy()),
           "loss": (loss, ref_loss.detach().numpy())}
  for head in ("pos", "neg"):
    if head in out:
      pairs[head] = (extras[head], out[head].detach().numpy())
  for name, expert in zip(names, ref.experts):
    pairs[f"grad {name}"] = (grads[name], expert.program.grad.numpy())
  if "gate" in trainable:
    pairs["grad gate"] = (grads["gate"], ref.gating_logits.grad.numpy())
  if kind == "biomedvr":
    pairs["cs"] = (aux["cs"], None)
  return pairs, method


def assert_close(pairs, tol=1e-4):
  for name, (ours, ref) in pairs.items():
    if ref is None:
      continue
    assert np.shape(ours) == np.shape(ref), (name, np.shape(ours), np.shape(ref))
    err = method_fixture.max_rel(ours, ref)
    assert err < tol, (name, err)


@pytest.fixture(scope="module")
def attr_dir(tmp_path_factory):
  return write_attributes(tmp_path_factory.mktemp("attributes"), CLASSES)


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
  return {"biomedclip": biomedclip_side(tmp_path_factory.mktemp("bc")),
          "openai": clip_side(tmp_path_factory.mktemp("clip"))}


@pytest.mark.parametrize("family", ["biomedclip", "openai"])
@pytest.mark.parametrize("kind", ["vp", "ar", "attrvr", "biomedvr"])
def test_tiny_matches_reference(sides, attr_dir, family, kind):
  pairs, method = run_both(sides[family], kind, attr_dir)
  assert_close(pairs)
  grads = [np.abs(np.asarray(v[0])).max() for k, v in pairs.items() if k.startswith("grad")]
  assert min(grads) > 0, "every trainable receives a gradient"
  if kind == "biomedvr":
    assert float(pairs["cs"][0]) > 0, "the hinge is active, so its gradient is compared too"


def test_tiny_biomedvr_cs_excluding_true_class_and_unique_sampling(sides, attr_dir):
  """Options: ``attr_sampling="unique"`` (5 distinct sentences, k = 3) matches the reference
  head on those sentences; ``cs_exclude_true`` is checked against a hand computation."""
  if "biomedvr" not in METHODS:
    pytest.skip("biomedvr is not registered yet")
  pairs, method = run_both(sides["openai"], "biomedvr", attr_dir, attr_sampling="unique",
                           seed=3)
  assert_close(pairs)
  assert all(len(per_class) == 5 for per_class in method.sentences["des"])
  fused, neg = np.asarray(pairs["logits"][0]), np.asarray(pairs["neg"][0])
  labels = np.arange(3) % len(CLASSES)
  other = np.where(np.eye(len(CLASSES), dtype=bool)[labels], -np.inf, neg).max(1)
  expected = np.maximum(other - fused[np.arange(3), labels] + 0.5, 0).mean()
  from biomedjax.methods import biomedvr
  got = biomedvr.confusion_suppression(fused, neg, labels, 0.5, exclude_true=True)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.slow
def test_full_size_biomedvr_step_matches_reference(tmp_path_factory, attr_dir):
  """OpenAI CLIP ViT-B/16 (open_clip ``ViT-B-16-quickgelu`` layout, random weights): one
  BioMedVR step at the reference sizes (224 canvas, S = 192, 16-pixel frame), batch 2."""
  classes = CLASSES[:3]
  small_attr = write_attributes(tmp_path_factory.mktemp("attr_full"), classes, n=3)
  side = clip_side(tmp_path_factory.mktemp("clip_full"), "clip_vit_b16", canvas=224, seed=4)
  pairs, method = run_both(side, "biomedvr", small_attr, batch_size=2, canvas=224, size=192,
                           border=16, classes=classes, attr_sampling="unique")
  assert_close(pairs)
  assert method.parameter_counts(perturbed(method.init(jax.random.key(0), {}), 0)) == {
      "stored": 301_058, "effective": 79_874}
