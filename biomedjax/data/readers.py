"""Examples (image path, target, origin) from the reference layout, a folder tree or a CSV.

Every example carries ``origin``, the place that defined it ("split_BTMRI.json:1234",
"labels.csv:17"), so a missing or corrupt image can be reported where the user can fix it.
Targets are an ``int`` class label or a float32 multi-hot vector.
"""

from __future__ import annotations

import csv
import pathlib
from typing import NamedTuple, Sequence

import numpy as np

from biomedjax.data import catalog
from biomedjax.data import splits as splits_lib
from biomedjax.data.splits import Item, SplitError


class Example(NamedTuple):
  path: str      # absolute (or root-joined) image path
  label: object  # int, or float32 multi-hot np.ndarray
  origin: str    # "file:line" that defined this example


def from_items(items: Sequence[Item], image_root, origins: Sequence[str] | None = None
               ) -> list[Example]:
  """Split-file items -> examples under ``image_root``; ``origins`` default to the paths."""
  root = pathlib.Path(image_root)
  origins = origins or [it.path for it in items]
  return [Example(str(root / it.path), it.label, o) for it, o in zip(items, origins, strict=True)]


def reference_split(info: catalog.DatasetInfo, root, split_file=None, check_files=True
                    ) -> dict[str, list[Example]]:
  """All splits of a catalog dataset in the reference layout, validated against its classes."""
  split_file = pathlib.Path(split_file or info.split_file(root))
  image_root = info.image_root(root) if check_files else None
  splits = splits_lib.read_split_file(split_file, info.classnames, image_root)
  lines = splits_lib.entry_lines(split_file)
  return {k: from_items(v, info.image_root(root), [f"{split_file}:{n}" for n in lines[k]])
          for k, v in splits.items()}


def read_class_folders(image_dir, classnames: Sequence[str] | None = None
                       ) -> tuple[list[Example], list[str]]:
  """A class-per-folder tree: label = position of the folder in sorted order."""
  image_dir = pathlib.Path(image_dir)
  folders = splits_lib.class_folders(image_dir)
  names = list(classnames) if classnames is not None else folders
  if len(names) != len(folders):
    raise SplitError(f"{image_dir}: {len(folders)} class folders but {len(names)} class names")
  examples = []
  for label, folder in enumerate(folders):
    files = splits_lib.list_images(image_dir / folder)
    if not files:
      raise SplitError(f"{image_dir / folder}: empty class folder")
    examples.extend(Example(str(image_dir / folder / f), label, str(image_dir / folder / f))
                    for f in files)
  return examples, names


def read_csv(csv_path, image_root=None, path_column: str = "path", label_column: str | None = None,
             label_columns: Sequence[str] | None = None, classnames: Sequence[str] | None = None,
             check_files: bool = True) -> list[Example]:
  """A CSV of images with either one ``label_column`` or several 0/1 ``label_columns``.

  A single label column may hold integers or, with ``classnames``, the class names themselves.
  Multi-label columns become a float32 multi-hot vector in the order given. Paths are relative
  to ``image_root`` (default: the CSV's folder).
  """
  csv_path = pathlib.Path(csv_path)
  if (label_column is None) == (label_columns is None):
    raise ValueError("give exactly one of label_column (single label) or label_columns (multi-hot)")
  root = pathlib.Path(image_root) if image_root is not None else csv_path.parent
  with open(csv_path, newline="") as f:
    reader = csv.DictReader(f)
    needed = [path_column] + ([label_column] if label_column else list(label_columns))
    missing = [c for c in needed if c not in (reader.fieldnames or [])]
    if missing:
      raise SplitError(f"{csv_path}:1: missing column(s) {missing}; header is {reader.fieldnames}")
    examples = []
    for row in reader:
      where = f"{csv_path}:{reader.line_num}"
      if label_column:
        label = _single_label(row[label_column], classnames, where)
      else:
        label = _multi_hot([row[c] for c in label_columns], label_columns, where)
      path = root / row[path_column]
      if check_files and not path.is_file():
        raise SplitError(f"{where}: image {row[path_column]!r} not found under {root}")
      examples.append(Example(str(path), label, where))
  if not examples:
    raise SplitError(f"{csv_path}: no rows")
  if label_column and classnames is not None:
    _check_no_empty_class(examples, classnames, csv_path)
  return examples


def _single_label(value: str, classnames, where: str) -> int:
  value = value.strip()
  if classnames is not None and value in classnames:
    return list(classnames).index(value)
  try:
    label = int(value)
  except ValueError:
    raise SplitError(f"{where}: label {value!r} is neither an integer nor a known class "
                     "name") from None
  if label < 0 or (classnames is not None and label >= len(classnames)):
    raise SplitError(f"{where}: label {label} out of range")
  return label


def _multi_hot(values: list[str], columns, where: str) -> np.ndarray:
  out = np.zeros(len(values), np.float32)
  for i, (v, c) in enumerate(zip(values, columns)):
    v = v.strip()
    if v not in ("0", "1", "0.0", "1.0"):
      raise SplitError(f"{where}: column {c!r} must be 0 or 1, got {v!r}")
    out[i] = float(v)
  return out


def _check_no_empty_class(examples, classnames, where):
  present = {e.label for e in examples}
  empty = [c for i, c in enumerate(classnames) if i not in present]
  if empty:
    raise SplitError(f"{where}: class(es) with no image: {empty}")
