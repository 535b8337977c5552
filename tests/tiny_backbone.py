"""A random-weight tiny BiomedCLIP ``Backbone`` with a small vocabulary, for method tests.

Shared by the method test files (CoOp family, zero-shot); no PyTorch needed.
"""

from __future__ import annotations

import pathlib

from biomedjax.methods.base import Backbone
from biomedjax.models import biomedclip as bc
from biomedjax.models import config as model_config
from biomedjax.models.clip import CLIP
from biomedjax.models.tokenizer import Tokenizer
from biomedjax.models.vocab import write_vocab

CLASSNAMES = ("glioma tumor", "meningioma_tumor", "pituitary tumor", "normal brain")
WORDS = ("a photo of an x the mri scan showing glioma meningioma pituitary tumor normal brain "
         "##oma with").split()


def make(tmp_dir: pathlib.Path, seed: int = 0):
  """-> (backbone, params) of the tiny preset."""
  cfg = model_config.tiny()
  vocab = write_vocab(tmp_dir, WORDS, size=cfg.text.vocab_size)
  return Backbone(CLIP(cfg), Tokenizer(vocab, cfg.text.context_length)), bc.init_params(cfg, seed)


def word_embeddings(params):
  return params["text"]["word_embeddings"]["embedding"]
