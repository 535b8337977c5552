"""A random-weight tiny OpenAI-CLIP-family ``Backbone`` with a generated BPE vocabulary.

The counterpart of ``tests/tiny_backbone.py`` for the second family (causal text tower, EOT
pooling, byte-level BPE with SOT/EOT, 77 tokens), so method tests can run over both families.
No PyTorch or open_clip needed.
"""

from __future__ import annotations

import pathlib

from biomedjax.methods.base import Backbone
from biomedjax.models import biomedclip as bc
from biomedjax.models import config as model_config
from biomedjax.models import families
from biomedjax.models.clip import CLIP
from tests.tiny_backbone import CLASSNAMES, WORDS  # noqa: F401  (same task for both families)


def make(tmp_dir: pathlib.Path, seed: int = 0):
  """-> (backbone, params) of the ``tiny_clip`` preset."""
  cfg = model_config.tiny_clip()
  tokenizer = families.random_tokenizer(cfg, tmp_dir, [w for w in WORDS if not w.startswith("##")])
  return Backbone(CLIP(cfg), tokenizer), bc.init_params(cfg, seed)


def word_embeddings(params):
  return params["text"]["token_embedding"]["embedding"]
