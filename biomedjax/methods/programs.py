"""Visual-reprogramming programs: pure functions that add a learned frame to the input image.

Reference: JXLiu-AI/BioMedVR ``methods/vp.py`` (= tmlr-group/AttrVR ``methods/vp.py``): the
classes ``ExpansiveVisualPrompt`` (here "padding") and ``PaddingVR``-style watermarking of VP
(here "watermark"). Images are float in [0, 1], NHWC (B, S, S, 3); the canvas is the backbone's
input size (224). Every function returns the *standardised* pixels the frozen image tower
receives, so ``Backbone.encode_pixels`` takes them directly.

Layout of a program: ``P`` is float32 (3, canvas, canvas), channel-first exactly as the
reference's ``nn.Parameter(torch.zeros(3, 224, 224))`` (a torch transcription copies it without a
transpose); it is transposed to HWC inside the forward. The mask ``M`` is a constant
(canvas, canvas, 1) of 0/1: 1 on the learnable frame, 0 elsewhere.

* **padding** (AR, AttrVR, BioMedVR): the S x S image is zero-padded to the canvas with
  left/top ``floor((canvas - S + 1) / 2)`` and right/bottom ``floor((canvas - S) / 2)`` pixels
  (torch ``F.pad`` as the reference calls it), then ``x~ = pad(x) + sigmoid(P) * M``, THEN
  standardised with the backbone's mean/std. The frame is every canvas pixel within ``border``
  of the edge that lies outside the image; with S + 2 border = canvas (192 + 2 * 16 = 224) that
  is exactly the reference's ``1 - centre(S)`` mask. Frame pixels are sigmoid(P) in (0, 1), so no
  clipping is needed and the centre is the unchanged image.
* **watermark** (VP as AttrVR/BioMedVR run it): the full canvas-sized image is standardised
  first, then ``+ P * M`` on a ``border``-pixel frame (30: a 164 x 164 centre stays clean); no
  sigmoid, no clipping.

Both reference inits are zeros; ``init="normal"`` draws N(0, 1) (the original PadPrompter's
init). Centre entries of P get zero gradient and weight decay is 0 in the VR protocol, so they
never move: the *stored* count is 3 canvas^2 per program, the *effective* count 3 |M|.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

PROGRAMS = ("padding", "watermark")
INITS = ("zeros", "normal")


def padding_offsets(size: int, canvas: int = 224) -> tuple[int, int]:
  """(before, after) zero padding of an S-pixel side to the canvas, as the reference pads."""
  return (canvas - size + 1) // 2, (canvas - size) // 2


def check(kind: str, size: int, border: int, canvas: int = 224) -> None:
  """One clear error for a program that does not fit the image or the canvas."""
  if kind not in PROGRAMS:
    raise ValueError(f"config.method.program={kind!r}: use one of {PROGRAMS}")
  if border < 1:
    raise ValueError(f"config.method.border={border}: the frame needs at least 1 pixel")
  if kind == "padding":
    if not 1 <= size < canvas:
      raise ValueError(f"config.method.image_size={size}: the padding program places the image "
                       f"inside the {canvas}-pixel canvas, so it must be below {canvas}")
    before = padding_offsets(size, canvas)[0]
    if border > before:
      raise ValueError(f"padding program: a {border}-pixel frame around a {size}-pixel image "
                       f"is larger than the {before}-pixel padding of the {canvas} canvas "
                       f"(image_size + 2 * border = {size + 2 * border} > {canvas}); lower "
                       f"config.method.border or config.method.image_size")
  else:
    if size != canvas:
      raise ValueError(f"config.method.image_size={size}: the watermark program is added to "
                       f"the full {canvas}-pixel image; set image_size={canvas}")
    if 2 * border >= canvas:
      raise ValueError(f"watermark program: a {border}-pixel frame leaves no centre in the "
                       f"{canvas}-pixel image (2 * border >= {canvas}); lower "
                       f"config.method.border")


def frame_mask(kind: str, size: int, border: int, canvas: int = 224) -> np.ndarray:
  """(canvas, canvas, 1) float32 0/1: where the program is added (see module doc)."""
  check(kind, size, border, canvas)
  edge = np.zeros((canvas, canvas), bool)
  edge[:border] = edge[-border:] = True
  edge[:, :border] = edge[:, -border:] = True
  if kind == "padding":
    before, _ = padding_offsets(size, canvas)
    edge[before:before + size, before:before + size] = False
  return edge.astype(np.float32)[..., None]


def init_program(rng, kind: str, canvas: int = 224) -> jax.Array:
  """(3, canvas, canvas) float32: zeros (the reference) or N(0, 1)."""
  if kind not in INITS:
    raise ValueError(f"config.method.program_init={kind!r}: use one of {INITS}")
  if kind == "zeros":
    return jnp.zeros((3, canvas, canvas), jnp.float32)
  return jax.random.normal(rng, (3, canvas, canvas), jnp.float32)


def standardize(images, mean, std):
  return (images - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def padding_program(images01, program, mask, mean, std):
  """[0, 1] images (B, S, S, 3) -> standardised (B, canvas, canvas, 3):
  ``standardize(pad(x) + sigmoid(P) * M)``."""
  canvas = mask.shape[0]
  before, after = padding_offsets(images01.shape[1], canvas)
  left, right = padding_offsets(images01.shape[2], canvas)
  x = jnp.pad(images01.astype(jnp.float32), ((0, 0), (before, after), (left, right), (0, 0)))
  frame = jax.nn.sigmoid(program.astype(jnp.float32)).transpose(1, 2, 0) * mask
  return standardize(x + frame, mean, std)


def watermark_program(images01, program, mask, mean, std):
  """[0, 1] images (B, canvas, canvas, 3) -> ``standardize(x) + P * M`` (no sigmoid)."""
  if images01.shape[1:3] != mask.shape[:2]:
    raise ValueError(f"watermark program: images of {images01.shape[1:3]} do not match the "
                     f"{mask.shape[:2]} canvas; set config.data.image_size={mask.shape[0]}")
  return (standardize(images01.astype(jnp.float32), mean, std)
          + program.astype(jnp.float32).transpose(1, 2, 0) * mask)


def apply(kind: str, images01, program, mask, mean, std):
  """The program named ``kind`` (a config choice read once, not a hidden registry)."""
  if kind == "padding":
    return padding_program(images01, program, mask, mean, std)
  return watermark_program(images01, program, mask, mean, std)


def effective_size(mask) -> int:
  """Entries of one program that can ever move: 3 channels x frame pixels."""
  return 3 * int(np.asarray(mask).sum())
