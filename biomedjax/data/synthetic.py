"""A synthetic, learnable image dataset: classes differ in colour and stripe texture.

Class c gets a hue (c / N around the colour wheel) and a stripe pattern (orientation and
frequency from c); each image adds a random phase, brightness jitter and pixel noise, so the
classes are easy but not trivial to tell apart. Written as a class-per-folder tree of PNGs plus a
split file in the reference format, i.e. exactly what a user's own data looks like.

``generate_multilabel`` is the multi-label counterpart: each image blends the patterns of a
random subset of the classes (possibly none), and ``{train,val,test}.csv`` hold one 0/1 column
per class, the format ``biomedjax.data.readers.read_csv`` reads for multi-hot targets.

CLI: ``python -m biomedjax.data.synthetic --out DIR --classes N --per-class M [--size S]``.
"""

from __future__ import annotations

import argparse
import colorsys
import csv
import pathlib

import numpy as np
from PIL import Image

from biomedjax.data import splits as splits_lib

SPLIT_FILE = "split_synthetic.json"


def class_folder(c: int) -> str:
  return f"class_{c:02d}"


def _pattern(c: int, num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
  """Class ``c``'s coloured stripes, float32 (size, size, 3) in [0, 1]."""
  color = np.array(colorsys.hsv_to_rgb(c / num_classes, 0.8, 0.9), np.float32)
  angle = np.pi * (c * 0.618 % 1.0)
  freq = 2.0 + 3.0 * (c % 4)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  phase = rng.uniform(0, 2 * np.pi)
  stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
  return stripes[..., None] * color * rng.uniform(0.7, 1.0)


def _to_uint8(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  image = image + rng.normal(0, 0.08, image.shape).astype(np.float32)
  return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def make_image(c: int, num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
  """One uint8 (size, size, 3) image of class ``c``."""
  return _to_uint8(_pattern(c, num_classes, size, rng), rng)


def generate_multilabel(out, num_classes: int, counts=(64, 32, 48), size: int = 64,
                        seed: int = 0, p_positive: float = 0.35) -> pathlib.Path:
  """Writes ``images/`` and ``{train,val,test}.csv`` (columns path, class_00, ...); returns out.

  Each label is present independently with ``p_positive``; the image is the mean of the present
  classes' patterns (a dim grey for none), so every label is learnable from the pixels."""
  out = pathlib.Path(out)
  rng = np.random.default_rng(seed)
  (out / "images").mkdir(parents=True, exist_ok=True)
  columns = [class_folder(c) for c in range(num_classes)]
  for split, n in zip(("train", "val", "test"), counts):
    with open(out / f"{split}.csv", "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["path", *columns])
      for i in range(n):
        target = rng.random(num_classes) < p_positive
        present = np.flatnonzero(target)
        image = (np.mean([_pattern(c, num_classes, size, rng) for c in present], axis=0)
                 if present.size else np.full((size, size, 3), 0.3, np.float32))
        name = f"images/{split}_{i:05d}.png"
        Image.fromarray(_to_uint8(image, rng)).save(out / name, compress_level=1)
        writer.writerow([name, *target.astype(int)])
  return out


def generate(out, num_classes: int, per_class: int, size: int = 64, seed: int = 0
             ) -> pathlib.Path:
  """Writes the tree and ``split_synthetic.json`` (50/20/30 per class); returns the split file."""
  out = pathlib.Path(out)
  rng = np.random.default_rng(seed)
  for c in range(num_classes):
    folder = out / class_folder(c)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
      Image.fromarray(make_image(c, num_classes, size, rng)).save(
          folder / f"img_{i:05d}.png", compress_level=1)
  split = splits_lib.split_from_folders(out, seed)
  splits_lib.write_split_file(out / SPLIT_FILE, split)
  return out / SPLIT_FILE


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--classes", type=int, required=True)
  parser.add_argument("--per-class", type=int, required=True)
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  print(generate(args.out, args.classes, args.per_class, args.size, args.seed))


if __name__ == "__main__":
  main()
