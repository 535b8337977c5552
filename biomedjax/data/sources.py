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


def validate_images(examples: Sequence[readers.Example], skip_bad_images: bool = False,
                    skipped: list | None = None) -> list[readers.Example]:
  """Decodes every image once and returns the readable ones.

  Every image is tried, so one error lists all the bad ones (the first ``MAX_LISTED`` with their
  split-file line, then a count) instead of one per run. Without ``skip_bad_images`` that error
  is raised; with it the bad ones are dropped, logged, and appended to ``skipped`` as
  ``{"origin", "path", "error"}`` records (the run writes them to results.json).
  """
  kept, bad = [], []
  for ex in examples:
    try:
      transforms.decode(pathlib.Path(ex.path).read_bytes(), f"{ex.path} ({ex.origin})")
      kept.append(ex)
    except (OSError, transforms.BadImageError) as e:
      bad.append((ex, str(e).splitlines()[0]))
  if bad and not skip_bad_images:
    listed = "; ".join(f"{ex.origin}: {err}" for ex, err in bad[:MAX_LISTED])
    more = f"; and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    raise transforms.BadImageError(
        f"{len(bad)} unreadable image(s) of {len(examples)}: {listed}{more} (fix or remove "
        "them, or pass --config.data.skip_bad_images=True to train without them)")
  if bad:
    logging.warning("skipped %d unreadable image(s) of %d, first: %s", len(bad), len(examples),
                    bad[0][0].origin)
  if skipped is not None:
    skipped += [{"origin": ex.origin, "path": ex.path, "error": err} for ex, err in bad]
  return kept


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
