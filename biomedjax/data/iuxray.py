"""IU-Xray (Indiana chest X-rays) as a 14-label multi-label dataset of frontal images, split by uid.

Layout (Kaggle "chest-xrays-indiana-university"): ``indiana_projections.csv`` (``uid, filename,
projection``) and ``images/images_normalized/<filename>`` under ``root``. The 14 CheXbert labels
come from a labels CSV in one of two shapes:

  * per study: a ``uid`` column and one column per label (joined with the projections file), or
  * per image, as the reference's ``iuxray_frontal_14labels.csv``: ``uid``, ``filename`` and the
    label columns (rows already frontal; a ``projection`` column, if present, is filtered).

Labels (Sadman et al., BIOKDD'25, notebook ``evaluatingBiomedClIP_IUXRAY.ipynb`` in
Nafiz95/BioVLM_Eval_CXR): a label is positive iff its CheXbert value is 1; uncertain (-1), 0 and
blank are negative (``uncertain_as=1.0`` is the U-Ones alternative). A row with no positive at all
becomes "No Finding".

Images: frontal only. ``frontal="first"`` (default) keeps one image per uid, the first frontal
row in file order; ``frontal="all"`` keeps every frontal image (each follows its uid's split).

Split (``split="reference"``): the unique uids in first-appearance order go through
scikit-learn's ``train_test_split(uids, test_size=0.30, random_state=42, shuffle=True)``, and the
30 % part through the same call with ``test_size=0.50``: 70/15/15 by uid, reproduced here with
numpy alone. ``train_test_split`` takes ``ceil(test_size * n)`` for the test part, so the
validation part is never larger than the test part: 3,818 uids give 2,672 / 573 / 573. (The
notebook's comments say 2,673 / 573 / 572 images; those counts need a few uids with two frontal
images, i.e. ``frontal="all"`` over fewer than 3,818 uids.) ``split="paper"`` is the paper's
70/10/20: the same two calls, the second with ``test_size=2/3``.
"""

from __future__ import annotations

import csv
import math
import pathlib
from typing import Sequence

import numpy as np

from biomedjax.data.readers import Example
from biomedjax.data.splits import SplitError

LABELS = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
          "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
          "Pleural Other", "Fracture", "Support Devices", "No Finding")
NO_FINDING = LABELS.index("No Finding")

# Domain groups of the seed paper; "No Finding" belongs to none.
DOMAINS = {
    "Cardiovascular": ("Enlarged Cardiomediastinum", "Cardiomegaly"),
    "Pulmonary": ("Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia",
                  "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other"),
    "Skeletal": ("Fracture",),
    "Device": ("Support Devices",),
}

SPLIT_SEED = 42
# (first test_size, second test_size): 70/15/15 (reference notebook) and 70/10/20 (paper text).
SPLITS = {"reference": (0.30, 0.50), "paper": (0.30, 2.0 / 3.0)}
PROJECTIONS_CSV = "indiana_projections.csv"
REFERENCE_CSV = "iuxray_frontal_14labels.csv"   # the reference's per-image labels file
IMAGE_DIR = ("images", "images_normalized")

_POSITIVE = ("1", "1.0")
_NEGATIVE = ("0", "0.0", "")
_UNCERTAIN = ("-1", "-1.0")


def domain_indices() -> dict[str, list[int]]:
  """Label indices (into ``LABELS``) of each domain group."""
  return {d: [LABELS.index(n) for n in names] for d, names in DOMAINS.items()}


def target_from_row(row: dict, where: str, uncertain_as: float = 0.0) -> np.ndarray:
  """float32 multi-hot over ``LABELS``: 1 iff the value is 1 (-1 -> ``uncertain_as``), and
  "No Finding" when nothing is positive."""
  target = np.zeros(len(LABELS), np.float32)
  for i, name in enumerate(LABELS):
    v = (row[name] or "").strip()
    if v in _POSITIVE:
      target[i] = 1.0
    elif v in _UNCERTAIN:
      target[i] = uncertain_as
    elif v not in _NEGATIVE:
      raise SplitError(f"{where}: {name!r} must be 1, 0, -1 or blank, got {v!r}")
  if not target.any():
    target[NO_FINDING] = 1.0
  return target


def _open_table(path: pathlib.Path, required: Sequence[str]):
  if not path.is_file():
    raise SplitError(f"{path}: file not found")
  f = open(path, newline="")
  reader = csv.DictReader(f)
  missing = [c for c in required if c not in (reader.fieldnames or [])]
  if missing:
    f.close()
    raise SplitError(f"{path}:1: missing column(s) {missing} (header: {reader.fieldnames})")
  return f, reader


def read_labels(labels_csv, uncertain_as: float = 0.0) -> dict[str, tuple[np.ndarray, str]]:
  """Per-study labels CSV: ``uid`` -> (multi-hot target, "file:line")."""
  labels_csv = pathlib.Path(labels_csv)
  f, reader = _open_table(labels_csv, ("uid",) + LABELS)
  out = {}
  with f:
    for row in reader:
      where = f"{labels_csv}:{reader.line_num}"
      uid = row["uid"].strip()
      if uid in out:
        raise SplitError(f"{where}: duplicate uid {uid!r} (first at {out[uid][1]})")
      out[uid] = (target_from_row(row, where, uncertain_as), where)
  return out


def read_projections(projections_csv) -> list[tuple[str, str, str, str]]:
  """(uid, filename, projection, "file:line") rows in file order."""
  projections_csv = pathlib.Path(projections_csv)
  f, reader = _open_table(projections_csv, ("uid", "filename", "projection"))
  with f:
    return [(r["uid"].strip(), r["filename"].strip(), r["projection"].strip(),
             f"{projections_csv}:{reader.line_num}") for r in reader]


def train_test_split_indices(n: int, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Indices of sklearn's ``train_test_split(range(n), test_size=..., random_state=seed)``.

  ShuffleSplit: ``n_test = ceil(test_size * n)``, ``n_train = n - n_test``; one permutation of
  ``np.random.RandomState(seed)``; test = its first ``n_test`` entries, train = the rest.
  """
  n_test = math.ceil(test_size * n)
  n_train = n - n_test
  if n_train <= 0 or n_test <= 0:
    raise SplitError(f"cannot split {n} uid(s) with test_size={test_size}: one part is empty")
  perm = np.random.RandomState(seed).permutation(n)
  return perm[n_test:n_test + n_train], perm[:n_test]


def uid_split(uids: Sequence[str], split: str = "reference", seed: int = SPLIT_SEED
              ) -> dict[str, list[str]]:
  """The reference's two-stage seeded split of unique uids (in the given order)."""
  if split not in SPLITS:
    raise ValueError(f"split={split!r}: use one of {sorted(SPLITS)}")
  first, second = SPLITS[split]
  uids = np.asarray(list(uids), dtype=object)
  if len(set(uids)) != len(uids):
    raise ValueError("uid_split needs unique uids")
  train, rest = train_test_split_indices(len(uids), first, seed)
  rest_uids = uids[rest]
  val, test = train_test_split_indices(len(rest_uids), second, seed)
  return {"train": list(uids[train]), "val": list(rest_uids[val]), "test": list(rest_uids[test])}


def _check_frontal(rows, uid_origins: dict, source, missing_frontal: str) -> None:
  with_frontal = {r[0] for r in rows}
  without = [(uid, where) for uid, where in uid_origins.items() if uid not in with_frontal]
  if without and missing_frontal == "error":
    raise SplitError(f"{without[0][1]}: uid {without[0][0]!r} has no frontal image in "
                     f"{source} ({len(without)} uid(s) without one; "
                     "missing_frontal='skip' leaves them out)")


def _images_from_per_image_csv(labels_csv: pathlib.Path, uncertain_as: float,
                               missing_frontal: str):
  """(uid, filename, target, origin) of the frontal rows of a reference-style per-image CSV."""
  f, reader = _open_table(labels_csv, ("uid", "filename") + LABELS)
  rows, uid_origins = [], {}
  with f:
    has_projection = "projection" in reader.fieldnames
    for row in reader:
      where = f"{labels_csv}:{reader.line_num}"
      uid_origins.setdefault(row["uid"].strip(), where)
      if has_projection and row["projection"].strip() != "Frontal":
        continue
      rows.append((row["uid"].strip(), row["filename"].strip(),
                   target_from_row(row, where, uncertain_as), where))
  _check_frontal(rows, uid_origins, labels_csv, missing_frontal)
  return rows


def _images_from_projections(root: pathlib.Path, labels_csv: pathlib.Path, uncertain_as: float,
                             missing_frontal: str):
  """(uid, filename, target, origin) of the frontal images of studies in a per-study CSV."""
  labels = read_labels(labels_csv, uncertain_as)
  projections_csv = root / PROJECTIONS_CSV
  rows = []
  for uid, filename, projection, origin in read_projections(projections_csv):
    if projection != "Frontal":
      continue
    if uid not in labels:
      raise SplitError(f"{origin}: uid {uid!r} has no row in {labels_csv}")
    rows.append((uid, filename, labels[uid][0], origin))
  _check_frontal(rows, {uid: where for uid, (_, where) in labels.items()}, projections_csv,
                 missing_frontal)
  return rows


def read_iuxray(root, labels_csv, split: str = "reference", frontal: str = "first",
                seed: int = SPLIT_SEED, uncertain_as: float = 0.0, missing_frontal: str = "error",
                check_files: bool = True) -> dict[str, list[Example]]:
  """Examples per split (train/val/test); each target is the image's 14-label multi-hot vector.

  ``labels_csv`` with a ``filename`` column is read as the reference's per-image table;
  otherwise as a per-study table joined with ``root/indiana_projections.csv``.
  """
  if frontal not in ("first", "all"):
    raise ValueError(f"frontal={frontal!r}: 'first' (one image per uid) or 'all'")
  if missing_frontal not in ("error", "skip"):
    raise ValueError(f"missing_frontal={missing_frontal!r}: 'error' or 'skip'")
  root, labels_csv = pathlib.Path(root), pathlib.Path(labels_csv)
  f, reader = _open_table(labels_csv, ("uid",))
  with f:
    per_image = "filename" in reader.fieldnames
  if per_image:
    rows = _images_from_per_image_csv(labels_csv, uncertain_as, missing_frontal)
  else:
    rows = _images_from_projections(root, labels_csv, uncertain_as, missing_frontal)
  if frontal == "first":
    seen, kept = set(), []
    for r in rows:
      if r[0] not in seen:
        seen.add(r[0])
        kept.append(r)
    rows = kept
  if not rows:
    raise SplitError(f"{labels_csv}: no frontal image")
  uids = list(dict.fromkeys(r[0] for r in rows))  # unique, first-appearance order
  split_of = {uid: s for s, us in uid_split(uids, split, seed).items() for uid in us}
  image_dir = root.joinpath(*IMAGE_DIR)
  out = {"train": [], "val": [], "test": []}
  for uid, filename, target, origin in rows:
    path = image_dir / filename
    if check_files and not path.is_file():
      raise SplitError(f"{origin}: image {filename!r} not found under {image_dir}")
    out[split_of[uid]].append(Example(str(path), target, origin))
  return out
