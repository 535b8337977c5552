"""``model.remat``: the image tower's blocks under jax.checkpoint give the same features and the
same gradients (to fp32 rounding) w.r.t. the input pixels (what visual reprogramming trains through), on both
families, and the backbone a run builds honours the option."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from biomedjax.models import config as model_config
from biomedjax.models.clip import CLIP
from biomedjax.train import setup


@pytest.mark.parametrize("preset", ["tiny", "tiny_clip"])
def test_remat_same_outputs_and_input_gradients(preset):
  cfg = model_config.PRESETS[preset]()  # at 64 px (16 patches): the same blocks, cheaper
  cfg = dataclasses.replace(cfg, vision=dataclasses.replace(cfg.vision, image_size=64))
  pixels = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 64, 3)), jnp.float32)
  params = jax.jit(lambda key: CLIP(cfg).init(key, pixels, method=CLIP.encode_image))(
      jax.random.key(3))["params"]  # the image tower only
  w = jnp.asarray(np.random.default_rng(1).normal(size=(cfg.embed_dim,)), jnp.float32)

  def run(remat):
    module = CLIP(cfg, remat=remat)

    def loss(x, params):  # params an argument: never folded into the program as constants
      feats = module.apply({"params": params}, x, method=CLIP.encode_image)
      return jnp.sum(jnp.tanh(feats) * w), feats
    (value, feats), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(pixels, params)
    return value, feats, grad, str(jax.make_jaxpr(loss)(pixels, params))

  v0, f0, g0, plain = run(False)
  v1, f1, g1, remat = run(True)
  np.testing.assert_allclose(f1, f0, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(v1, v0, rtol=1e-6)
  # Recomputation reorders fp32 sums (XLA fuses the recomputed blocks differently): equal to
  # rounding, ~1e-7 of the largest gradient here.
  scale = float(jnp.abs(g0).max())
  assert scale > 0
  np.testing.assert_allclose(g1, g0, rtol=0, atol=1e-5 * scale)
  remat_ops = re.compile(r"\b(?:remat2?|checkpoint)\[")
  assert len(remat_ops.findall(remat)) == cfg.vision.depth  # the blocks really are remat'ed
  assert not remat_ops.findall(plain)
  assert jax.tree.structure(jax.eval_shape(lambda: CLIP(cfg, remat=True).init(
      jax.random.key(0), pixels[:1], method=CLIP.encode_image))["params"]) == \
      jax.tree.structure(params)  # the same parameter tree: converted weights load unchanged


def test_run_config_builds_a_remat_backbone(tmp_path, monkeypatch):
  monkeypatch.setattr(setup.bc, "init_params", lambda cfg: {})  # only the module matters here
  monkeypatch.setattr(setup.families, "random_tokenizer", lambda *a: None)
  cfg = ml_collections.ConfigDict(dict(init="", preset="tiny", compute_dtype="float32",
                                       remat=True))
  assert setup.build_backbone(cfg, tmp_path)[0].module.remat
  cfg.remat = False
  assert not setup.build_backbone(cfg, tmp_path)[0].module.remat
