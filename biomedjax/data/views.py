"""Augmented views of the training set for methods that fit on cached features.

The adapter baselines run in BiomedCoOp's ``main.py`` harness, whose train transform differs from
Dassl's: ``RandomResizedCrop(224, scale=(0.5, 1), ratio=(3/4, 4/3), bicubic)`` then
``RandomHorizontalFlip(0.5)`` (torchvision draws ``torch.rand(1) < 0.5`` after the crop). The crop
box follows torchvision's ``get_params`` (``transforms.random_resized_crop_box``); random numbers
come from grain's per-example generator, seeded by the run seed and the view number.

``encode_views`` runs the frozen image tower over ``views`` such passes of the whole training set
in source order and returns (V, n, d) unnormalised features: what a method with ``fit_views``
needs, computed once per run so its whole procedure (searches, fine-tunes) runs on features.
"""

from __future__ import annotations

import grain
import numpy as np
from PIL import Image

from biomedjax.data import transforms

HARNESS_SCALE = (0.5, 1.0)


def harness_train_image(image: Image.Image, rng: np.random.Generator, size: int = 224
                        ) -> np.ndarray:
  """RandomResizedCrop(scale 0.5-1) + horizontal flip (p = 0.5) -> uint8 (size, size, 3)."""
  box = transforms.random_resized_crop_box(image.width, image.height,
                                           lambda lo, hi: float(rng.uniform(lo, hi)),
                                           lambda lo, hi: int(rng.integers(lo, hi)),
                                           scale=HARNESS_SCALE)
  out = transforms.resized_crop(image, box, size)
  if rng.uniform() < 0.5:
    out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return np.asarray(out, dtype=np.uint8)


class HarnessTrainTransform(grain.transforms.RandomMap):
  """record ``{"image": bytes, "label", "path"}`` -> ``{"image": uint8 HWC, "label"}``."""

  def __init__(self, size: int = 224):
    self.size = size

  def random_map(self, record, rng: np.random.Generator):
    image = transforms.decode(record["image"], record["path"])
    return {"image": harness_train_image(image, rng, self.size), "label": record["label"]}


def encode_views(source, encode, views: int, seed: int, batch_size: int, image_size: int = 224,
                 transform: grain.transforms.RandomMap | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
  """``views`` augmented passes over ``source`` through ``encode(uint8 images) -> (B, d)``.

  ``transform``: the augmentation (default the harness's ``HarnessTrainTransform``; the
  engine's ``cached:V`` view streams pass the training transform).

  Returns (features (views, n, d) float32, labels (n,)), rows in source order. Single-process:
  every host encodes the (small, few-shot) training set itself.
  """
  if views < 1:
    raise ValueError(f"views={views}: a method that fits on augmented views needs at least 1")
  n = len(source)
  if n == 0:
    raise ValueError(f"empty training source {source!r}")
  out, labels = [], None
  for v in range(views):
    ds = (grain.MapDataset.source(source).seed(seed * 100003 + v)
          .random_map(transform or HarnessTrainTransform(image_size)))
    feats, ys = [], []
    for start in range(0, n, batch_size):
      records = [ds[i] for i in range(start, min(n, start + batch_size))]
      images = np.stack([r["image"] for r in records])
      pad = batch_size - len(records)  # one batch shape, one compilation
      if pad:
        images = np.concatenate([images, np.repeat(images[-1:], pad, 0)])
      feats.append(np.asarray(encode(images))[:len(records)])
      ys.append(np.array([r["label"] for r in records]))
    out.append(np.concatenate(feats).astype(np.float32))
    labels = np.concatenate(ys)
  return np.stack(out), labels
