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
