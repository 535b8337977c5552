"""Image decoding and the reference train/eval transforms, on PIL as torchvision does them.

Train: ``RandomResizedCrop(224, bicubic, scale=(0.08, 1), ratio=(3/4, 4/3))``; with
``resize_first`` a ``Resize(S, bicubic)`` of the short side comes before it (the visual
reprogramming reference's train transform, BioMedVR/AttrVR ``experiments/*.py``: Resize(S) ->
RandomResizedCrop(S) -> RandomHorizontalFlip, so the crop samples a box of the S-resized image).
The crop box follows torchvision's ``RandomResizedCrop.get_params`` step by step (10 attempts,
then the ratio-clamped central fallback); the crop and resize are the PIL calls torchvision
makes for PIL input, so a given box yields torchvision's pixels. Random numbers come from the
per-example ``np.random.Generator`` grain hands to a ``RandomMap`` (reproducible per seed, but
not torch's stream).
Eval: ``biomedjax.models.preprocess.resize_crop`` (resize short side, center crop).
Both yield uint8 RGB: normalisation is the model's job, on the device, with its own mean/std
(``Backbone.normalize``), so a pipeline serves any backbone and moves a quarter of the bytes.
"""

from __future__ import annotations

import io
import math
from typing import Callable

import grain
import numpy as np
from PIL import Image

from biomedjax.models import preprocess as pp

SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


class BadImageError(ValueError):
  """An image that cannot be decoded; the message names the file."""


def decode(data: bytes, name: str) -> Image.Image:
  """Encoded bytes -> fully loaded RGB PIL image; truncated or corrupt data raises with ``name``."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()
      return pp.to_rgb(image)
  except Exception as e:  # PIL raises several unrelated types for bad data.
    raise BadImageError(f"{name}: cannot decode image ({type(e).__name__}: {e})") from None


def random_resized_crop_box(width: int, height: int, uniform: Callable[[float, float], float],
                            randint: Callable[[int, int], int], scale=SCALE, ratio=RATIO
                            ) -> tuple[int, int, int, int]:
  """torchvision's ``get_params``: (top, left, h, w). ``randint(lo, hi)`` excludes ``hi``."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target_area = area * uniform(scale[0], scale[1])
    aspect = math.exp(uniform(log_ratio[0], log_ratio[1]))
    w = int(round(math.sqrt(target_area * aspect)))
    h = int(round(math.sqrt(target_area / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = randint(0, height - h + 1)
      left = randint(0, width - w + 1)
      return top, left, h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    w, h = int(round(height * max(ratio))), height
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(image: Image.Image, box: tuple[int, int, int, int], size: int) -> Image.Image:
  """torchvision ``F.resized_crop`` on PIL: crop (top, left, h, w), then bicubic resize."""
  top, left, h, w = box
  return image.crop((left, top, left + w, top + h)).resize((size, size), Image.Resampling.BICUBIC)


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
  """torchvision ``Resize(size, bicubic)`` on PIL: short side to ``size``, aspect kept."""
  new_size = pp.resized_size(image.width, image.height, size)
  if new_size == (image.width, image.height):
    return image
  return image.resize(new_size, Image.Resampling.BICUBIC)


def train_image(image: Image.Image, rng: np.random.Generator, size: int = 224,
                resize_first: bool = False) -> np.ndarray:
  """[Resize(size) ->] RandomResizedCrop -> uint8 (size, size, 3)."""
  if resize_first:
    image = resize_short_side(image, size)
  box = random_resized_crop_box(image.width, image.height,
                                lambda lo, hi: float(rng.uniform(lo, hi)),
                                lambda lo, hi: int(rng.integers(lo, hi)))
  return np.asarray(resized_crop(image, box, size), dtype=np.uint8)


class TrainTransform(grain.transforms.RandomMap):
  """record ``{"image": bytes, "label", "path"}`` -> ``{"image": uint8 HWC, "label", "mask"}``."""

  def __init__(self, size: int = 224, flip: bool = False, resize_first: bool = False):
    self.size = size
    self.flip = flip  # RandomHorizontalFlip(p=0.5) after the crop (CalibPrompt's Dassl config)
    self.resize_first = resize_first  # Resize(size) before the crop (visual reprogramming)

  def random_map(self, record, rng: np.random.Generator):
    image = train_image(decode(record["image"], record["path"]), rng, self.size,
                        self.resize_first)
    if self.flip and rng.uniform() < 0.5:
      image = image[:, ::-1].copy()
    return {"image": image, "label": record["label"], "mask": True}


class EvalTransform(grain.transforms.Map):
  """Eval preprocessing; records flagged ``padding`` become zero images with ``mask`` False."""

  def __init__(self, size: int = 224):
    self.size = size

  def map(self, record):
    if record.get("padding", False):
      image = np.zeros((self.size, self.size, 3), np.uint8)
    else:
      image = pp.resize_crop(decode(record["image"], record["path"]), self.size)
    return {"image": image, "label": record["label"], "mask": not record.get("padding", False)}
