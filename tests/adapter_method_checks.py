"""Shared set-up for the adapter Method tests: the tiny backbone, a method built from its config,
its frozen pytree, and synthetic features of the backbone's width (as FeatureSets)."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np

from biomedjax.methods import METHODS
from biomedjax.methods.base import FeatureSet, Task
from tests import adapter_features, tiny_backbone

CLASSES = tiny_backbone.CLASSNAMES


def build(name, tiny, **overrides):
  """-> (method, frozen) for ``configs/<name>.py`` with ``config.method`` overrides."""
  backbone, params = tiny
  config = importlib.import_module(f"configs.{name}").get_config("dataset=synthetic,shots=4")
  for k, v in overrides.items():
    config.method[k] = v
  method = METHODS[name].build(backbone, Task(CLASSES), config.method)
  frozen = jax.tree.map(jnp.asarray, {"backbone": params, **method.prepare(params)})
  return method, frozen


def features(dim, views=1, seed=0, shots=8):
  d = adapter_features.make(seed=seed, dim=dim, shots=shots, views=views, noise=2.0,
                            text_noise=2.0)
  train = FeatureSet(d.views if views > 1 else d.views[0], d.train_labels)
  return train, FeatureSet(d.val, d.val_labels), FeatureSet(d.test, d.test_labels)


def accuracy(method, trainable, frozen, split: FeatureSet) -> float:
  logits = np.asarray(method.logits(trainable, frozen, jnp.asarray(split.features)))
  assert logits.shape == (len(split.labels), len(CLASSES)) and np.isfinite(logits).all()
  return float(np.mean(logits.argmax(1) == split.labels))
