"""Eval-time image preprocessing, identical to open_clip's BiomedCLIP transform.

open_clip 3.3 (and so every BiomedCLIP number in the literature) evaluates with torchvision's
``Resize(224, BICUBIC)`` on the short side, ``CenterCrop(224)``, then ``convert("RGB")``,
``ToTensor`` and ``Normalize``. The RGB conversion comes *after* the resize, so RGBA, greyscale and
16-bit images are resampled in their own mode (PIL premultiplies alpha, keeps 16 bits) before they
become RGB. torchvision applies those ops to PIL images through PIL itself, so doing the same PIL
calls in the same order reproduces its pixels exactly without importing torch.
The output is HWC float32 (JAX convolutions are NHWC), not torchvision's CHW.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
  """(width, height) after a torchvision ``Resize(size)``: short side = size, long side truncated."""
  short, long = (width, height) if width <= height else (height, width)
  if short == size:
    return width, height
  new_short, new_long = size, int(size * long / short)
  return (new_short, new_long) if width <= height else (new_long, new_short)


def center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
  """torchvision's CenterCrop offsets (round half to even, as Python's round) as a PIL box."""
  if width < size or height < size:
    raise ValueError(f"image of {width}x{height} is smaller than the {size} crop after resizing")
  top = int(round((height - size) / 2.0))
  left = int(round((width - size) / 2.0))
  return left, top, left + size, top + size


def to_rgb(image: Image.Image) -> Image.Image:
  """RGB conversion as open_clip's ``_convert_to_rgb`` (``Image.convert('RGB')``).

  PIL's conversion of 16-bit greyscale clips values above 255; this is what the reference does
  and so what reproducing its numbers needs.
  """
  return image if image.mode == "RGB" else image.convert("RGB")


def normalize(pixels_uint8: np.ndarray, mean=OPENAI_MEAN, std=OPENAI_STD) -> np.ndarray:
  """uint8 HWC -> float32 HWC scaled to [0, 1] and standardised per channel."""
  x = pixels_uint8.astype(np.float32) / np.float32(255.0)
  return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def resize_crop(image: Image.Image, size: int = 224) -> np.ndarray:
  """PIL image -> uint8 RGB array (size, size, 3): the eval transform before normalisation.

  The input pipeline ships these bytes; the model normalises them on the device."""
  new_size = resized_size(image.width, image.height, size)
  if new_size != (image.width, image.height):
    image = image.resize(new_size, Image.Resampling.BICUBIC)
  image = to_rgb(image.crop(center_crop_box(image.width, image.height, size)))
  return np.asarray(image, dtype=np.uint8)


def preprocess(image: Image.Image, size: int = 224, mean=OPENAI_MEAN, std=OPENAI_STD) -> np.ndarray:
  """PIL image -> normalised float32 array of shape (size, size, 3)."""
  return normalize(resize_crop(image, size), mean, std)
