"""A random-weight tiny PMC-CLIP-family ``Backbone``: the ResNet tower (with BatchNorm statistics
in the backbone pytree) and the BERT pooler head, with a generated WordPiece vocabulary.

The third family of the method tests (after ``tests/tiny_backbone.py`` and
``tests/tiny_clip_backbone.py``): every method also runs on a ResNet image tower. No PyTorch.
"""

from __future__ import annotations

import pathlib

from biomedjax.methods.base import Backbone
from biomedjax.models import biomedclip as bc
from biomedjax.models import config as model_config
from biomedjax.models import families
from biomedjax.models.clip import CLIP
from tests.tiny_backbone import CLASSNAMES, WORDS  # noqa: F401  (same task for every family)


def make(tmp_dir: pathlib.Path, seed: int = 0, preset: str = "tiny_pmcclip"):
  """-> (backbone, params) of the ``tiny_pmcclip`` preset, or of another tiny random-weight
  ``preset`` with a generated vocabulary (the method contract's other ResNet / MedCLIP towers:
  ``tiny_clip_rn``, ``tiny_medclip``, ``tiny_medclip_resnet``)."""
  cfg = model_config.PRESETS[preset]()
  words = WORDS if cfg.family == "pmcclip" else [w for w in WORDS if not w.startswith("##")]
  tokenizer = families.random_tokenizer(cfg, tmp_dir, words)
  return Backbone(CLIP(cfg), tokenizer), bc.init_params(cfg, seed)


def word_embeddings(params):
  return params["text"]["word_embeddings"]["embedding"]
