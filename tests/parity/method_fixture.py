"""open_clip BiomedCLIP-architecture models (random weights) and the same weights as a Backbone.

For method parity tests: the torch model and open_clip's tokenizer on one side, a biomedjax
``Backbone`` with the converted parameters (the real mapping, in memory) on the other.
"""

from __future__ import annotations

import pathlib

import jax

from biomedjax.methods.base import Backbone
from biomedjax.models import config as model_config
from biomedjax.models.clip import CLIP
from biomedjax.models.tokenizer import Tokenizer
from convert.biomedclip import map_state_dict
from tests.parity import openclip_fixture as fx


def build(tmp_dir: pathlib.Path, preset: str, seed: int = 0):
  """-> (torch_model, open_clip tokenizer, backbone, params) sharing one set of weights."""
  cfg = model_config.PRESETS[preset]()
  src, torch_model = fx.make_checkpoint(tmp_dir, preset, seed=seed, hub_layout=False)
  (src / "open_clip_pytorch_model.bin").unlink()  # in memory from here on; saves disk
  sd = {k: v.numpy() for k, v in torch_model.state_dict().items()}
  params = jax.device_put(map_state_dict(sd, cfg))
  backbone = Backbone(CLIP(cfg), Tokenizer(src, cfg.text.context_length))
  return torch_model, fx.openclip_tokenizer(src, cfg.text.context_length), backbone, params


def loss_and_grads(method, trainable, frozen, batch):
  """((loss, aux), d loss / d trainable) of one batch through the method's own
  ``value_and_grad`` (what the engine's step applies), jitted: our side of every method parity
  test's ``run_both(side, classnames, opts, batch_size, seed, ...)``."""
  return jax.jit(method.value_and_grad)(trainable, frozen, batch, jax.random.key(0))


def max_rel(a, b) -> float:
  """max |a - b| / max |b|, in float64: the relative error the parity tolerances bound."""
  import numpy as np
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / np.abs(b).max())


def frozen_torch(model, fn):
  """Runs ``fn`` with the (shared) torch backbone frozen, as the reference trains it: no
  gradients for the 196M backbone weights (faster; the context gradients are the same)."""
  flags = [p.requires_grad for p in model.parameters()]
  model.requires_grad_(False)
  try:
    return fn()
  finally:
    for p, f in zip(model.parameters(), flags):
      p.requires_grad_(f)
