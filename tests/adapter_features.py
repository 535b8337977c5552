"""Synthetic image/text features for the adapter tests (Tip-Adapter(-F), LP++, CLIP-Adapter).

Class centres in R^d, image features = centre + noise (unnormalised, as the engine hands them
over), text features = noisy normalised centres. ``noise`` sets how hard the task is: hard enough
that searches and selections have something to choose.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Features:
  train: np.ndarray       # (n, d) float32, unnormalised
  train_labels: np.ndarray
  views: np.ndarray       # (V, n, d) augmented views of the training images
  val: np.ndarray
  val_labels: np.ndarray
  test: np.ndarray
  test_labels: np.ndarray
  text: np.ndarray        # (N, d) normalised


def make(seed=0, num_classes=4, shots=16, val_per_class=4, test_per_class=25, dim=512,
         noise=1.6, text_noise=1.0, views=1, view_noise=0.5) -> Features:
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_classes, dim)) / np.sqrt(dim)
  offset = rng.normal(size=dim) / np.sqrt(dim)  # a shared direction, as real features have

  def draw(per_class):
    y = np.repeat(np.arange(num_classes), per_class)
    x = centres[y] + offset + noise * rng.normal(size=(y.size, dim)) / np.sqrt(dim)
    return (3.0 * x).astype(np.float32), y.astype(np.int32)

  train, train_y = draw(shots)
  order = rng.permutation(train_y.size)  # loader order is shuffled
  train, train_y = train[order], train_y[order]
  v = train[None] + view_noise * rng.normal(size=(views, *train.shape)).astype(np.float32) / \
      np.sqrt(dim) * 3.0
  val, val_y = draw(val_per_class)
  test, test_y = draw(test_per_class)
  text = centres + offset + text_noise * rng.normal(size=centres.shape) / np.sqrt(dim)
  text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
  return Features(train, train_y, v.astype(np.float32), val, val_y, test, test_y, text)


def normalize(x):
  x = np.asarray(x, np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)
