"""Random-access sources for grain: image files on disk, or prepared ArrayRecord shards.

Every source returns records ``{"image": encoded bytes, "label": int | float32 vector,
"path": str}``; decoding happens in the pipeline's transforms, so both sources share it.
``validate_images`` decodes everything once up front: a corrupt image then fails (or, with
``skip_bad_images``, is dropped with a logged count) before training starts, not mid-run.
"""

from __future__ import annotations

import json
import logging
import pathlib
import re
from typing import Sequence

import numpy as np

from biomedjax.data import readers
from biomedjax.data import transforms
from biomedjax.data.splits import Item

METADATA_FILE = "biomedjax.json"  # written by prepare.py next to the TFDS files
PREPARED_SPLIT_FILE = "split.json"  # the split file a prepared folder was built from (prepare.py)


def _label(label):
  return np.asarray(label, np.float32) if np.ndim(label) else int(label)


class ImageFileSource:
  """Examples read from disk on access (grain ``RandomAccessDataSource`` protocol)."""

  def __init__(self, examples: Sequence[readers.Example]):
    self.examples = list(examples)

  def __len__(self):
    return len(self.examples)

  def __getitem__(self, index):
    ex = self.examples[index]
    try:
      data = pathlib.Path(ex.path).read_bytes()
    except OSError as e:
      raise transforms.BadImageError(f"{ex.origin}: cannot read {ex.path} ({e})") from None
    return {"image": data, "label": _label(ex.label), "path": f"{ex.path} ({ex.origin})"}

  def __repr__(self):
    return f"ImageFileSource({len(self)} images)"


MAX_LISTED = 20  # bad images named in an error; the rest are counted


def _decode_error(path: str) -> str | None:
  """None for a readable image, else one line: the path, what failed (no object addresses)."""
  try:
    transforms.decode(pathlib.Path(path).read_bytes(), path)
    return None
  except (OSError, transforms.BadImageError) as e:
    return re.sub(r" <[^>]* at 0x[0-9a-fA-F]+>", "", str(e).splitlines()[0])


def validate_splits(splits: dict[str, Sequence[readers.Example]], skip_bad_images: bool = False,
                    skipped: list | None = None) -> dict[str, list[readers.Example]]:
  """Decodes every image of every split once and returns each split's readable ones.

  All splits are checked in one pass, so one error lists every bad image (once, with each
  split-file line that names it; the first ``MAX_LISTED``, then a count) instead of the test
  split's bad image turning up on the next run. Without ``skip_bad_images`` that error is
  raised; with it the bad ones are dropped, logged, and appended to ``skipped`` as
  ``{"origin", "path", "error"}`` records, one per split entry (the run writes them to
  results.json).
  """
  errors, origins = {}, {}
  for examples in splits.values():
    for ex in examples:
      if ex.path not in errors:
        errors[ex.path] = _decode_error(ex.path)
      if errors[ex.path] is not None:
        origins.setdefault(ex.path, []).append(ex.origin)
  total = len({ex.path for examples in splits.values() for ex in examples})
  if origins and not skip_bad_images:
    listed = "; ".join(f"{', '.join(dict.fromkeys(o))}: {errors[p]}"
                       for p, o in list(origins.items())[:MAX_LISTED])
    more = f"; and {len(origins) - MAX_LISTED} more" if len(origins) > MAX_LISTED else ""
    raise transforms.BadImageError(
        f"{len(origins)} unreadable image(s) of {total}: {listed}{more} (fix or remove "
        "them, or pass --config.data.skip_bad_images=True to train without them)")
  if origins:
    logging.warning("skipped %d unreadable image(s) of %d, first: %s", len(origins), total,
                    next(iter(origins.values()))[0])
  out = {}
  for name, examples in splits.items():
    out[name] = [ex for ex in examples if errors[ex.path] is None]
    if skipped is not None:
      skipped += [{"origin": ex.origin, "path": ex.path, "error": errors[ex.path]}
                  for ex in examples if errors[ex.path] is not None]
  return out


def validate_images(examples: Sequence[readers.Example], skip_bad_images: bool = False,
                    skipped: list | None = None) -> list[readers.Example]:
  """``validate_splits`` of one list of examples."""
  return validate_splits({"": examples}, skip_bad_images, skipped)[""]


class ArrayRecordSource:
  """One split of a dataset written by ``biomedjax.data.prepare`` (read without TensorFlow)."""

  def __init__(self, dataset_dir, split: str):
    import tensorflow_datasets as tfds  # heavy import, only for prepared data
    self.dataset_dir = pathlib.Path(dataset_dir)
    meta = json.loads((self.dataset_dir / METADATA_FILE).read_text())
    self.classnames = meta["classnames"]
    self.paths = meta["paths"][split]
    builder = tfds.builder_from_directory(str(self.dataset_dir))
    self._source = builder.as_data_source(split=split)
    if len(self._source) != len(self.paths):
      raise ValueError(f"{self.dataset_dir}: {split} has {len(self._source)} records but "
                       f"{METADATA_FILE} lists {len(self.paths)}")
    self.split = split

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    r = self._source[index]
    path = r["path"].decode() if isinstance(r["path"], bytes) else r["path"]
    return {"image": r["image"], "label": _label(r["label"]), "path": path}

  def select(self, items: Sequence[Item]) -> "SubsetSource":
    """The records of ``items`` (e.g. a few-shot selection), with the items' labels."""
    index = {p: i for i, p in enumerate(self.paths)}
    missing = [it.path for it in items if it.path not in index]
    if missing:
      raise KeyError(f"{self.dataset_dir} ({self.split}): {len(missing)} selected image(s) not "
                     f"in the prepared data (skipped as bad?), first: {missing[0]}")
    return SubsetSource(self, [index[it.path] for it in items], [it.label for it in items])

  def __repr__(self):
    return f"ArrayRecordSource({self.dataset_dir}, {self.split!r}, {len(self)} records)"


class SubsetSource:
  """Some records of a source, in the given order, optionally relabelled (base-to-novel)."""

  def __init__(self, source, indices: Sequence[int], labels: Sequence | None = None):
    self.source, self.indices = source, list(indices)
    self.labels = None if labels is None else list(labels)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, index):
    record = self.source[self.indices[index]]
    if self.labels is not None:
      record["label"] = _label(self.labels[index])
    return record
