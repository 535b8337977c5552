"""IU-Xray (Indiana chest X-rays) as a 14-label multi-label dataset, split by patient.

Public layout (Kaggle "chest-xrays-indiana-university"): ``indiana_reports.csv`` (one row per
study ``uid``: findings, impression, ...), ``indiana_projections.csv`` (``uid, filename,
projection``) and ``images/images_normalized/<filename>``. The 14 CheXbert labels come from a
CSV produced by running CheXbert on the reports, with a ``uid`` column and one column per label
holding 1 (positive), 0 or blank (negative), -1 (uncertain; mapped by ``uncertain_as``).

Split: studies (one patient each in IU-Xray) are shuffled with ``random.Random(seed)`` (seed 4)
and cut 70/10/20, so no patient appears in two splits; every image of a study follows it.
"""

from __future__ import annotations

import csv
import pathlib
import random
from typing import Sequence

import numpy as np

from biomedjax.data.readers import Example
from biomedjax.data.splits import SplitError

LABELS = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
          "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
          "Pleural Other", "Fracture", "Support Devices", "No Finding")

# Domain groups of the seed paper; "No Finding" belongs to none.
DOMAINS = {
    "Cardiovascular": ("Enlarged Cardiomediastinum", "Cardiomegaly"),
    "Pulmonary": ("Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia",
                  "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other"),
    "Skeletal": ("Fracture",),
    "Device": ("Support Devices",),
}

SPLIT_SEED = 4
FRACTIONS = (0.7, 0.1, 0.2)


def domain_indices() -> dict[str, list[int]]:
  """Label indices (into ``LABELS``) of each domain group."""
  return {d: [LABELS.index(n) for n in names] for d, names in DOMAINS.items()}


def read_labels(labels_csv, uncertain_as: float = 1.0) -> dict[str, np.ndarray]:
  """``uid`` -> float32 multi-hot over ``LABELS`` from the CheXbert CSV."""
  labels_csv = pathlib.Path(labels_csv)
  out = {}
  with open(labels_csv, newline="") as f:
    reader = csv.DictReader(f)
    missing = [c for c in ("uid",) + LABELS if c not in (reader.fieldnames or [])]
    if missing:
      raise SplitError(f"{labels_csv}:1: missing column(s) {missing}")
    for row in reader:
      where = f"{labels_csv}:{reader.line_num}"
      values = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "": 0.0,
                "-1": uncertain_as, "-1.0": uncertain_as}
      target = np.zeros(len(LABELS), np.float32)
      for i, name in enumerate(LABELS):
        v = row[name].strip()
        if v not in values:
          raise SplitError(f"{where}: {name!r} must be 1, 0, -1 or blank, got {v!r}")
        target[i] = values[v]
      if row["uid"] in out:
        raise SplitError(f"{where}: duplicate uid {row['uid']!r}")
      out[row["uid"]] = target
  return out


def read_projections(projections_csv, projections: Sequence[str] | None = None
                     ) -> list[tuple[str, str, str]]:
  """(uid, filename, origin) rows, optionally only some projections ("Frontal", "Lateral")."""
  projections_csv = pathlib.Path(projections_csv)
  rows = []
  with open(projections_csv, newline="") as f:
    reader = csv.DictReader(f)
    for row in reader:
      if projections is None or row["projection"] in projections:
        rows.append((row["uid"], row["filename"], f"{projections_csv}:{reader.line_num}"))
  return rows


def patient_split(uids: Sequence[str], seed: int = SPLIT_SEED, fractions=FRACTIONS
                  ) -> dict[str, set[str]]:
  """Sorted uids shuffled with ``random.Random(seed)``, cut into train/val/test by fraction."""
  order = sorted(set(uids))
  random.Random(seed).shuffle(order)
  n_train = round(len(order) * fractions[0])
  n_val = round(len(order) * fractions[1])
  return {"train": set(order[:n_train]), "val": set(order[n_train:n_train + n_val]),
          "test": set(order[n_train + n_val:])}


def read_iuxray(root, labels_csv, projections: Sequence[str] | None = ("Frontal",),
                seed: int = SPLIT_SEED, uncertain_as: float = 1.0, check_files: bool = True
                ) -> dict[str, list[Example]]:
  """Examples per split; each image's target is its study's multi-hot label vector."""
  root = pathlib.Path(root)
  labels = read_labels(labels_csv, uncertain_as)
  rows = read_projections(root / "indiana_projections.csv", projections)
  image_dir = root / "images" / "images_normalized"
  unlabelled = [origin for uid, _, origin in rows if uid not in labels]
  if unlabelled:
    raise SplitError(f"{unlabelled[0]}: study has no row in {labels_csv} "
                     f"({len(unlabelled)} image(s) without labels)")
  split_of = {uid: s for s, uids in patient_split([r[0] for r in rows], seed).items()
              for uid in uids}
  out = {"train": [], "val": [], "test": []}
  for uid, filename, origin in rows:
    path = image_dir / filename
    if check_files and not path.is_file():
      raise SplitError(f"{origin}: image {filename!r} not found under {image_dir}")
    out[split_of[uid]].append(Example(str(path), labels[uid], origin))
  return out
