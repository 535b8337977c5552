"""Shared by the KgCoOp and ProGrad tests: independent text features, a tiny run.

``reference_text_features`` rebuilds the reference's "end" prompts at 256 tokens in numpy (word
embeddings of "X X X X {name}.", context rows spliced at positions 1..n_ctx), independently of
the prompt learner's bucketed ids and device-side scatter. ``tiny_run`` goes through
``train_and_evaluate``, so the methods are checked as they run (the engine's step on every method:
tests/methods/test_method_contract.py).
"""

from __future__ import annotations

import json
import pathlib

import jax.numpy as jnp
import numpy as np

from biomedjax.train.loop import train_and_evaluate
from tests import tiny_backbone
from tests.tiny_backbone import normalize  # noqa: F401  (the KgCoOp/ProGrad tests' pmc.normalize)


def reference_text_features(backbone, params, classnames, ctx, length=256):
  """(n_cls, D) normalised features of the reference's end-position prompts; jax in ctx."""
  hf = backbone.tokenizer.hf
  n_ctx = ctx.shape[-2]
  ids = np.zeros((len(classnames), length), np.int32)
  for i, c in enumerate(classnames):
    row = hf(" ".join(["X"] * n_ctx) + f" {c.replace('_', ' ')}.")["input_ids"]
    ids[i, :len(row)] = row
  emb = jnp.asarray(tiny_backbone.word_embeddings(params))[ids]
  ctx = jnp.broadcast_to(ctx, (len(classnames),) + ctx.shape[-2:])
  emb = jnp.concatenate([emb[:, :1], ctx, emb[:, 1 + n_ctx:]], axis=1)
  feats = backbone.text_features_from_embeds(params, emb, jnp.asarray(ids != 0))
  return feats / jnp.linalg.norm(feats, axis=-1, keepdims=True)


def template_features(backbone, params, classnames):
  """Normalised features of "a photo of a {name}." at 256 tokens (the frozen t^clip)."""
  texts = [f"a photo of a {c.replace('_', ' ')}." for c in classnames]
  return normalize(backbone.text_features(params, *backbone.tokenize(texts, 256)))


def synthetic_batch(n=8, num_classes=4, seed=0):
  return {**tiny_backbone.image_batch(n, num_classes, seed), "mask": np.ones(n, bool)}


def tiny_run(config, workdir: pathlib.Path, epochs: int, lr: float) -> dict:
  """``train_and_evaluate`` of a method config on the tiny random preset and synthetic images."""
  config.data.dataset = "synthetic"
  config.data.test_batch_size = 64
  config.model.preset = "tiny"
  config.model.init = ""
  config.optim.epochs = epochs
  config.optim.lr = lr
  config.train.progress = False
  config.train.log_every_steps = 5
  train_and_evaluate(config, workdir)
  return json.loads((workdir / "results.json").read_text())
