"""CoCoOp on the tiny preset: per-image prompts, meta-net init, loss, training, end to end.

The reference is a float64 numpy transcription of CoCoOp's forward: meta-net on the normalised
image feature, ctx + bias per image, one text-tower call per image (the reference's loop), cosine
logits, cross-entropy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biomedjax.methods import cocoop
from biomedjax.methods.base import Task
from tests import tiny_backbone

CLASSES = tiny_backbone.CLASSNAMES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return tiny_backbone.make(tmp_path_factory.mktemp("vocab"))


def _batch(n=3, seed=0):
  return tiny_backbone.image_batch(n, len(CLASSES), seed)


_normalize = tiny_backbone.normalize


def reference_logits(method, trainable, frozen, image_features):
  """Per image: bias = meta_net(f), prompts with ctx + bias, text tower, cosine logits."""
  params, net = frozen["backbone"], jax.tree.map(lambda x: np.asarray(x, np.float64),
                                                 trainable["meta_net"])
  img = _normalize(np.asarray(image_features, np.float64))
  scale = float(np.exp(np.asarray(params["logit_scale"], np.float64)))
  out = []
  for f in img:
    h = np.maximum(f @ net["linear1"]["kernel"] + net["linear1"]["bias"], 0)
    bias = h @ net["linear2"]["kernel"] + net["linear2"]["bias"]
    ctx = jnp.asarray(np.asarray(trainable["ctx"], np.float64) + bias, jnp.float32)
    txt = method.learner.text_features(params, ctx, frozen["token_embeddings"])
    out.append(scale * _normalize(np.asarray(txt, np.float64)) @ f)
  return np.stack(out)


@pytest.mark.parametrize("opts", [{}, {"ctx_init": "", "csc": True,
                                       "class_token_position": "middle"}])
def test_logits_and_loss_match_per_image_reference(tiny, opts):
  backbone, params = tiny
  method = cocoop.build(backbone, Task(CLASSES), dict(opts, eval_chunk=2))
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = method.init(jax.random.key(0), frozen)
  # Tiny preset: the hidden layer has 2 units; shift them so that ReLU is active for every image.
  trainable["meta_net"]["linear1"]["bias"] += 0.5
  batch = _batch()
  feats = backbone.image_features(params, batch["image"])
  ref = reference_logits(method, trainable, frozen, feats)
  # eval_chunk=2 with 3 images: one full chunk and one padded chunk
  np.testing.assert_allclose(method.logits(trainable, frozen, feats), ref, rtol=1e-5, atol=1e-5)
  loss, aux = method.loss(trainable, frozen, tiny_backbone.with_features(method, batch, frozen),
                          jax.random.key(0))
  lp = ref - ref.max(1, keepdims=True)
  lp = lp - np.log(np.exp(lp).sum(1, keepdims=True))
  np.testing.assert_allclose(loss, -lp[np.arange(3), batch["label"]].mean(), rtol=1e-5)
  assert aux["accuracy"] == np.mean(ref.argmax(1) == batch["label"])
  # The bias matters: images get different prompts, so logits differ from CoOp's.
  assert np.abs(np.asarray(method.image_text_features(trainable, frozen, _normalize(
      np.asarray(feats)))[0] - method.image_text_features(trainable, frozen, _normalize(
          np.asarray(feats)))[1])).max() > 1e-4


def test_meta_net_shapes_and_torch_default_init(tiny):
  backbone, params = tiny
  method = cocoop.build(backbone, Task(CLASSES), {})
  trainable = method.init(jax.random.key(0), {"backbone": params})
  shapes = jax.tree.map(np.shape, trainable)
  assert shapes == {"ctx": (4, 64), "meta_net": {"linear1": {"kernel": (32, 2), "bias": (2,)},
                                                 "linear2": {"kernel": (2, 64), "bias": (64,)}}}
  big = cocoop.torch_linear_init(jax.random.key(1), 512, 32)
  for x in (big["kernel"], big["bias"]):  # U(-1/sqrt(512), 1/sqrt(512))
    x = np.asarray(x)
    assert np.abs(x).max() <= 1 / np.sqrt(512) and np.abs(x).max() > 0.95 / np.sqrt(512)
    assert abs(x.std() - 1 / np.sqrt(512) / np.sqrt(3)) < 0.1 / np.sqrt(512)
  with pytest.raises(ValueError, match="cocoop eval_chunk=0"):
    cocoop.build(backbone, Task(CLASSES), {"eval_chunk": 0})
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['meta_width'\]"):
    cocoop.build(backbone, Task(CLASSES), {"meta_width": 8})


def test_sgd_reduces_loss_and_changes_only_trainable(tiny):
  backbone, params = tiny
  method = cocoop.build(backbone, Task(CLASSES), {})
  assert method.stages == ("train",) and method.inputs == "features"
  frozen = {"backbone": params, **method.prepare(params)}
  before = jax.tree.map(np.array, frozen)
  trainable = method.init(jax.random.key(0), frozen)
  trainable["meta_net"]["linear1"]["bias"] += 0.5  # 2 hidden units: keep ReLU alive (see above)
  start = jax.tree.map(np.array, trainable)
  batch = jax.tree.map(jnp.asarray, _batch(4))
  trainable, _, losses = tiny_backbone.engine_steps(method, trainable, frozen, batch, n=5, lr=0.5)
  assert losses[-1] < losses[0] - 0.05, losses
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), trainable, start)
  assert all(jax.tree.leaves(changed)), changed  # ctx and every meta-net leaf train
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, frozen), before)


def test_train_and_evaluate_end_to_end(tmp_path):
  from biomedjax.train.loop import train_and_evaluate
  from configs import cocoop as cfg_lib
  config = cfg_lib.get_config("dataset=synthetic,shots=8")
  assert (config.data.batch_size, config.optim.lr, config.optim.epochs) == (1, 0.001, 10)
  config.model.preset, config.model.init = "tiny", ""
  config.data.synthetic.per_class = 24
  config.data.batch_size = 8
  config.optim.lr, config.optim.epochs = 0.02, 8
  config.method.csc = True  # random tiny text tower: see tests/methods/test_biomedcoop.py
  config.train.progress = False
  results = train_and_evaluate(config, tmp_path / "run")
  assert (tmp_path / "run" / "results.json").is_file()
  assert results["method"] == "cocoop"
  assert results["test"]["accuracy"] > 0.4, results["test"]  # 4 classes: chance is 0.25


def test_config_and_sweeps():
  from configs import cocoop as cfg_lib
  c = cfg_lib.get_config("dataset=kvasir,shots=4,seed=2")
  assert (c.method.name, c.method.n_ctx, c.method.ctx_init, c.method.csc) == (
      "cocoop", 4, "a photo of a", False)
  assert (c.data.batch_size, c.optim.lr, c.optim.epochs, c.data.shots, c.seed) == (
      1, 0.001, 10, 4, 2)
  points = []
  cfg_lib.sweep(lambda **kw: points.append(kw["arg"]), None)
  assert len(points) == 11 * 5 * 3
  points = []
  cfg_lib.sweep(lambda **kw: points.append(kw["arg"]), "setting=base2novel")
  assert len(points) == 11 * 3 and all("setting=base2novel" in p for p in points)
