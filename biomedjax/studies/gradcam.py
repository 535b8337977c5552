"""Grad-CAM maps of the ViT image tower for one finding, and PNG overlays.

What is computed, as pytorch-grad-cam's ``GradCAM`` with a ViT ``reshape_transform`` (the setup of
the IU-Xray study, Sadman et al., BIOKDD'25, ``evaluatingBiomedClIP_IUXRAY.ipynb`` in
Nafiz95/BioVLM_Eval_CXR):

  1. A: the output of one layer inside a transformer block, by default the attention output
     projection of block -3 (timm ``trunk.blocks[-3].attn.proj``; here
     ``visual/blocks_{depth-3}/attn/proj``), without its [CLS] token: (B, 196, C) -> (B, 14, 14, C).
  2. The target scalar per image is linear in the tower's (unnormalised) output e: zero-shot,
     the raw dot product e . t_c with the label's text feature (``zero_shot_target``); a linear
     probe or fine-tuned model, the head logit e . W[:, c] + b[c] (``head_target``). The batch's
     targets are summed and differentiated with respect to A.
  3. Channel weights w_k = mean over the 14x14 grid of dTarget/dA_k; map = ReLU(sum_k w_k A_k).
  4. Per image: x - min, then / (max + 1e-7); resized bilinearly (cv2 ``INTER_LINEAR``:
     half-pixel centres, edge pixels repeated) to the model's input size.
  5. Several layers: each scaled as in 4, then ReLU, mean over layers, and min-max again (the
     library does the last min-max for one layer too).

Overlays (``overlay``): ``"crop"`` (default) draws the map on the image the model saw (short side
resized, centre crop), where it is aligned; ``"full"`` maps it back onto the crop's region of the
original image at the original size; ``"squashed"`` is the reference's quirk: the whole image
resized to 224x224 regardless of aspect ratio, so the map is misaligned on non-square images.
The colours follow pytorch-grad-cam's ``show_cam_on_image`` (JET heat map, image weight 0.5,
rescaled by the maximum), with matplotlib's JET instead of OpenCV's.

CLI::

  python -m biomedjax.studies.gradcam --model DIR [--workdir RUN] --image X.png --label "Cardiomegaly" \\
      --out overlay.png [--blocks -3 -1] [--overlay crop|full|squashed] [--save-map map.npy]

Without ``--workdir`` the target is zero-shot (text feature of the bare label); with a run
directory of a linear probe or fine-tuning run, the head logit of that label (and, for
fine-tuning, the run's tuned image tower).
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from PIL import Image

from biomedjax.models import preprocess as pre
from biomedjax.models.clip import CLIP, variables

DEFAULT_BLOCKS = (-3,)
DEFAULT_LAYER = "attn/proj"
SCALE_EPS = 1e-7       # pytorch-grad-cam scale_cam_image
IMAGE_WEIGHT = 0.5     # pytorch-grad-cam show_cam_on_image
OVERLAYS = ("crop", "full", "squashed")


# -- targets --------------------------------------------------------------------------------


def zero_shot_target(text_features, label: int) -> np.ndarray:
  """Weight vector of the zero-shot target e . t_c (raw, unnormalised text feature of c)."""
  return np.asarray(text_features, np.float32)[label]


def head_target(head_kernel, label: int) -> np.ndarray:
  """Weight vector of the head logit e . W[:, c] + b[c] (the bias does not change gradients)."""
  return np.asarray(head_kernel, np.float32)[:, label]


# -- maps -----------------------------------------------------------------------------------


def layer_paths(depth: int, blocks: Sequence[int] = DEFAULT_BLOCKS,
                layer: str = DEFAULT_LAYER) -> list[tuple[str, ...]]:
  """Module paths of ``layer`` (e.g. "attn/proj", "mlp/fc2") in each block (negative = from the
  end, as Python indexing)."""
  paths = []
  for b in blocks:
    if not -depth <= int(b) < depth:
      raise ValueError(f"block {b} does not exist in a tower of {depth} blocks "
                       f"(use -{depth}..{depth - 1})")
    paths.append(("visual", f"blocks_{int(b) % depth}", *layer.split("/")))
  return paths


@functools.lru_cache(maxsize=8)
def _acts_and_grads_fn(cfg, paths: tuple[tuple[str, ...], ...]):
  """jit(params, pixels, weights (B, D)) -> (activations, gradients) per path, each (B, S, C)."""
  module = CLIP(cfg)

  def forward(deltas, params, pixels, weights):
    acts = {}

    def interceptor(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      path = tuple(context.module.path)
      if context.method_name == "__call__" and path in deltas:
        out = out + deltas[path]  # zero: only there to differentiate with respect to ``out``
        acts[path] = out
      return out

    with nn.intercept_methods(interceptor):
      feats = module.apply(variables(params), pixels, method=CLIP.encode_image)
    return jnp.sum(feats * weights), acts

  def run(params, pixels, weights):
    shapes = {}

    def probe(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if context.method_name == "__call__" and tuple(context.module.path) in paths:
        shapes[tuple(context.module.path)] = jax.ShapeDtypeStruct(out.shape, out.dtype)
      return out

    def shape_only(p, x):
      with nn.intercept_methods(probe):
        return module.apply(variables(p), x, method=CLIP.encode_image)

    jax.eval_shape(shape_only, params, pixels)
    missing = [p for p in paths if p not in shapes]
    if missing:
      raise ValueError(f"no layer {'/'.join(missing[0])} in the image tower")
    deltas = {p: jnp.zeros(s.shape, s.dtype) for p, s in shapes.items()}
    grads, acts = jax.grad(forward, has_aux=True)(deltas, params, pixels, weights)
    return acts, grads

  return jax.jit(run)


def bilinear_resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """(B, h, w) -> (B, H, W) as cv2.resize INTER_LINEAR: source = (dst + 0.5) * in/out - 0.5,
  clamped to the edge pixels."""

  def matrix(n_in, n_out):
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1.0 - frac
    m[np.arange(n_out), hi] += frac
    return m

  ry, rx = matrix(maps.shape[1], size[0]), matrix(maps.shape[2], size[1])
  return (ry @ np.asarray(maps, np.float64) @ rx.T).astype(np.float32)


def scale_maps(maps: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
  """pytorch-grad-cam ``scale_cam_image``: per map (x - min) / (max + 1e-7), then resize."""
  maps = np.asarray(maps, np.float32)
  maps = maps - maps.min(axis=(1, 2), keepdims=True)
  maps = maps / (SCALE_EPS + maps.max(axis=(1, 2), keepdims=True))
  return bilinear_resize(maps, size) if size is not None else maps


def gradcam(module: CLIP, params, pixels, weights, blocks: Sequence[int] = DEFAULT_BLOCKS,
            layer: str = DEFAULT_LAYER) -> np.ndarray:
  """Grad-CAM maps (B, H, W) in [0, 1] at the input's size.

  ``pixels`` (B, H, W, 3) are normalised model inputs; ``weights`` (D,) or (B, D) define each
  image's target scalar e . weights (see ``zero_shot_target`` / ``head_target``); ``params`` are
  the CLIP parameters whose ``visual`` entry is the tower to explain (pretrained or fine-tuned).
  """
  pixels = jnp.asarray(pixels, jnp.float32)
  b, h, w, _ = pixels.shape
  weights = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), (b, module.cfg.embed_dim))
  paths = tuple(layer_paths(module.cfg.vision.depth, blocks, layer))
  acts, grads = _acts_and_grads_fn(module.cfg, paths)(params, pixels, weights)
  grid = int(round(module.cfg.vision.num_patches ** 0.5))
  per_layer = []
  for p in paths:
    a = np.asarray(acts[p], np.float32)[:, 1:].reshape(b, grid, grid, -1)
    g = np.asarray(grads[p], np.float32)[:, 1:].reshape(b, grid, grid, -1)
    cam = np.einsum("bhwc,bc->bhw", a, g.mean(axis=(1, 2)))
    per_layer.append(scale_maps(np.maximum(cam, 0.0), (h, w)))
  stacked = np.maximum(np.stack(per_layer, axis=1), 0.0)
  return scale_maps(stacked.mean(axis=1))


# -- images and overlays --------------------------------------------------------------------


def model_view(image: Image.Image, size: int) -> np.ndarray:
  """The image the model sees, unnormalised, (size, size, 3) float32 in [0, 1]."""
  pixels = pre.preprocess(image, size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
  return pixels.astype(np.float32)


def squashed_view(image: Image.Image, size: int) -> np.ndarray:
  """The reference's display image: RGB, resized to (size, size) ignoring the aspect ratio."""
  rgb = image.convert("RGB").resize((size, size))
  return np.asarray(rgb, np.float32) / 255.0


def heat_overlay(image01: np.ndarray, cam: np.ndarray, alpha: np.ndarray | None = None
                 ) -> np.ndarray:
  """show_cam_on_image: 0.5 JET(cam) + 0.5 image, divided by its maximum -> uint8 RGB.

  ``alpha`` (H, W) in {0, 1} optionally limits the heat map to a region (the rest is the image).
  """
  from matplotlib import colormaps
  heat = colormaps["jet"](np.uint8(255 * np.clip(cam, 0, 1)))[..., :3].astype(np.float32)
  out = (1 - IMAGE_WEIGHT) * heat + IMAGE_WEIGHT * image01
  if alpha is not None:
    out = np.where(alpha[..., None] > 0, out, image01)
  out = out / np.max(out)
  return np.uint8(255 * out)


def overlay_image(image: Image.Image, cam: np.ndarray, size: int, overlay: str = "crop"
                  ) -> np.ndarray:
  """The overlay (uint8 RGB) of one map computed on ``model_view(image, size)``."""
  if overlay == "crop":
    return heat_overlay(model_view(image, size), cam)
  if overlay == "squashed":
    return heat_overlay(squashed_view(image, size), cam)
  if overlay == "full":
    rgb = np.asarray(image.convert("RGB"), np.float32) / 255.0
    width, height = image.size
    rw, rh = pre.resized_size(width, height, size)
    left, top, right, bottom = pre.center_crop_box(rw, rh, size)
    sx, sy = width / rw, height / rh
    x0, x1 = int(round(left * sx)), int(round(right * sx))
    y0, y1 = int(round(top * sy)), int(round(bottom * sy))
    canvas = np.zeros((height, width), np.float32)
    alpha = np.zeros((height, width), np.float32)
    canvas[y0:y1, x0:x1] = bilinear_resize(cam[None], (y1 - y0, x1 - x0))[0]
    alpha[y0:y1, x0:x1] = 1.0
    return heat_overlay(rgb, canvas, alpha)
  raise ValueError(f"overlay={overlay!r}: use one of {OVERLAYS}")


def save_png(array_uint8: np.ndarray, path) -> pathlib.Path:
  """Writes atomically (temporary file + rename): an existing file is never left half-written."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  Image.fromarray(array_uint8).save(tmp, format="PNG")
  tmp.replace(path)
  return path


# -- CLI ------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m biomedjax.studies.gradcam", description=__doc__.split(
      "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", required=True, help="converted BiomedCLIP directory")
  p.add_argument("--workdir", default=None,
                 help="a linear-probe or fine-tuning run directory (default: zero-shot)")
  p.add_argument("--image", required=True, help="image file (any PIL format)")
  p.add_argument("--label", required=True, help='finding, e.g. "Cardiomegaly"')
  p.add_argument("--out", required=True, help="overlay PNG to write")
  p.add_argument("--blocks", type=int, nargs="+", default=list(DEFAULT_BLOCKS),
                 help="transformer block(s), negative from the end (default: -3)")
  p.add_argument("--layer", default=DEFAULT_LAYER, help="layer inside the block")
  p.add_argument("--overlay", choices=OVERLAYS, default="crop")
  p.add_argument("--save-map", default=None, help="also save the (H, W) map as .npy")
  return p


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  import biomedjax
  from biomedjax.studies import gradcam_targets
  image_path = pathlib.Path(args.image)
  try:
    image = Image.open(image_path)
    image.load()
  except (OSError, ValueError) as e:
    print(f"error: {image_path}: cannot read image ({e})", file=sys.stderr)
    return 2
  try:
    model = biomedjax.load(args.model)
    params, weights, description = gradcam_targets.resolve(model, args.workdir, args.label)
  except (OSError, ValueError, KeyError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  size = model.cfg.vision.image_size
  pixels = model.preprocess(image)[None]
  cam = gradcam(model.module, params, pixels, weights, args.blocks, args.layer)[0]
  out = save_png(overlay_image(image, cam, size, args.overlay), args.out)
  if args.save_map:
    np.save(args.save_map, cam)
  print(f"wrote {out} ({description}; blocks {args.blocks}, overlay {args.overlay})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
