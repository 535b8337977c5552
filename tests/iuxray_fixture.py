"""A synthetic IU-Xray tree in the Kaggle layout, for end-to-end tests (no real data needed).

``indiana_projections.csv`` (a frontal and a lateral image per uid, uids in shuffled order),
``images/images_normalized/<uid>_IM-....dcm.png`` (small non-square greyscale PNGs whose
brightness pattern depends on the labels, so there is something to learn), and the reference's
per-image ``iuxray_frontal_14labels.csv`` with CheXbert-style values (1, 0, -1, blank).
"""

from __future__ import annotations

import csv
import pathlib

import numpy as np
from PIL import Image

from biomedjax.data import iuxray


def write_tree(root, n_uids: int = 60, size=(48, 40), seed: int = 0) -> pathlib.Path:
  root = pathlib.Path(root)
  image_dir = root.joinpath(*iuxray.IMAGE_DIR)
  image_dir.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  uids = [str(u) for u in rng.permutation(np.arange(1, n_uids + 1))]
  proj, labels = [], []
  for uid in uids:
    values = rng.choice(["1", "0", "", "-1"], size=13, p=[0.12, 0.5, 0.3, 0.08])
    positive = values == "1"
    for view in ("Frontal", "Lateral"):
      name = f"{uid}_IM-{view}-1001.dcm.png"
      pixels = rng.integers(0, 60, (size[1], size[0]), dtype=np.uint8)
      for j in np.flatnonzero(positive):
        pixels[:, (j * size[0]) // 13:((j + 1) * size[0]) // 13] += 150
      Image.fromarray(pixels, "L").save(image_dir / name)
      proj.append([uid, name, view])
      if view == "Frontal":
        labels.append([uid, name, "findings", "impression"] + list(values) + [""])
  with open(root / iuxray.PROJECTIONS_CSV, "w", newline="") as f:
    csv.writer(f).writerows([["uid", "filename", "projection"]] + proj)
  with open(root / iuxray.REFERENCE_CSV, "w", newline="") as f:
    csv.writer(f).writerows([["uid", "filename", "findings", "impression", *iuxray.LABELS]]
                            + labels)
  return root
