"""Writes a dataset as ArrayRecord shards through a TFDS builder, without TensorFlow.

``python -m biomedjax.data.prepare --dataset btmri --raw DIR --out DIR`` reads the reference
layout (``DIR/BTMRI/BTMRI/<path>`` plus ``DIR/BTMRI/split_BTMRI.json``; ``--split-file`` to
override) and writes ``OUT/btmri/``, readable with ``sources.ArrayRecordSource(OUT/btmri, split)``.
Own data, under any name (a catalog key included), needs ``--split-file``; ``--raw`` is then its
image root and the class names come from the split file. The prepared folder carries the split
file it was built from (``split.json``, skipped images left out), so a run needs only
``--config.data.prepared=OUT/<name>``.

Records hold the file's *encoded bytes* unchanged (so eval pixels equal those of the original
file, and TFDS never needs TensorFlow to encode), the label and the relative path. Records keep
split-file order (TFDS shuffling disabled), and ``biomedjax.json`` lists the paths per split so a
few-shot selection maps to record indices without reading images.

Every image is decoded once while writing: a corrupt image or a missing file stops the run with
the split file's line, unless ``--skip-bad-images`` (skipped ones are counted in the log and
listed in ``biomedjax.json``). Atomicity: everything is built in ``OUT/.tmp-<name>-<pid>`` and
renamed to ``OUT/<name>`` only when complete; an existing ``OUT/<name>`` means done (rerun is a
no-op unless ``--force``). When no split file exists (OCTMNIST), one is generated from the class
folders (seeded 50/20/30 per class, as Dassl) and saved as ``OUT/split_<Name>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import shutil

import numpy as np
import tensorflow_datasets as tfds

from biomedjax.data import catalog
from biomedjax.data import readers
from biomedjax.data import splits as splits_lib
from biomedjax.data import sources
from biomedjax.data import transforms


class BiomedImages(tfds.core.GeneratorBasedBuilder):
  """Encoded images + label + path per split; the examples are handed in, not downloaded."""

  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the examples of each split to the constructor."
  # Nothing is downloaded, so no checksums file; TFDS would otherwise locate one beside this
  # module through `importlib_resources`, which is not installed with TFDS.
  _checksums_path = None

  def __init__(self, *, examples: dict[str, list[readers.Example]], num_labels: int | None,
               skip_bad_images: bool, **kwargs):
    self._examples, self._num_labels = examples, num_labels
    self._skip_bad_images = skip_bad_images
    self.skipped = {}
    super().__init__(**kwargs)

  def _info(self):
    label = (tfds.features.Tensor(shape=(self._num_labels,), dtype=np.float32)
             if self._num_labels else tfds.features.Scalar(dtype=np.int64))
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(), dtype=np.object_),  # encoded bytes, as is
        "label": label,
        "path": tfds.features.Text(),
    })
    return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in self._examples}

  def _generate_examples(self, split):
    for key, ex in enumerate(self._examples[split]):
      try:
        data = pathlib.Path(ex.path).read_bytes()
        transforms.decode(data, ex.path)
      except (OSError, transforms.BadImageError) as e:
        if not self._skip_bad_images:
          raise transforms.BadImageError(f"{ex.origin}: {e}") from None
        self.skipped.setdefault(split, []).append([ex.origin, str(e)])
        continue
      yield key, {"image": data, "label": ex.label, "path": ex.relpath}


def _with_relpaths(examples, image_root):
  """Adds ``relpath`` (as written in the split file) to each example for the records."""
  root = pathlib.Path(image_root)
  return [_RelExample(*ex, relpath=str(pathlib.Path(ex.path).relative_to(root)))
          for ex in examples]


class _RelExample(readers.Example):
  def __new__(cls, path, label, origin, relpath):
    self = super().__new__(cls, path, label, origin)
    self.relpath = relpath
    return self


def find_split_file(info: catalog.DatasetInfo, raw: pathlib.Path) -> pathlib.Path | None:
  for candidate in (info.split_file(raw), raw / info.split_file_name):
    if candidate.is_file():
      return candidate
  return None


def load_examples(dataset: str, raw, out, split_file=None, split_seed: int = 1):
  """(examples per split, classnames, image root) for a catalog dataset or a custom split file."""
  raw, out = pathlib.Path(raw), pathlib.Path(out)
  info = catalog.DATASETS.get(dataset.lower())
  # Own data (any name, a catalog key included): a split file whose paths are relative to --raw.
  if info is None or (split_file is not None and not info.image_root(raw).is_dir()):
    if split_file is None:
      raise ValueError(f"{dataset!r} is not in the catalog: pass --split-file (paths relative "
                       "to --raw)")
    items = splits_lib.read_split_file(split_file, image_root=raw)
    lines = splits_lib.entry_lines(split_file)
    examples = {k: readers.from_items(v, raw, [f"{split_file}:{n}" for n in lines[k]])
                for k, v in items.items()}
    names = {it.label: it.classname for v in items.values() for it in v}
    return examples, [names[k] for k in sorted(names)], raw
  split_file = split_file or find_split_file(info, raw)
  if split_file is None:
    split_file = out / info.split_file_name
    logging.warning("no %s under %s: generating %s from the class folders (seed %d)",
                    info.split_file_name, raw, split_file, split_seed)
    out.mkdir(parents=True, exist_ok=True)
    splits_lib.write_split_file(split_file, splits_lib.split_from_folders(
        info.image_root(raw), split_seed, info.classnames))
  return readers.reference_split(info, raw, split_file), list(info.classnames), info.image_root(raw)


def prepare(dataset: str, raw, out, split_file=None, skip_bad_images: bool = False,
            force: bool = False) -> pathlib.Path:
  """Builds ``out/<dataset>`` (see the module docstring); returns that directory."""
  out = pathlib.Path(out)
  name = dataset.lower()
  final = out / name
  if final.exists() and not force:
    logging.info("%s exists: already prepared", final)
    return final
  for stale in out.glob(f".tmp-{name}-*"):  # left by interrupted runs; never read as data
    shutil.rmtree(stale, ignore_errors=True)
  examples, classnames, image_root = load_examples(dataset, raw, out, split_file)
  examples = {k: _with_relpaths(v, image_root) for k, v in examples.items()}
  multi = np.ndim(next(iter(examples.values()))[0].label) > 0
  tmp = out / f".tmp-{name}-{os.getpid()}"
  try:
    builder = BiomedImages(
        examples=examples, num_labels=len(classnames) if multi else None,
        skip_bad_images=skip_bad_images, data_dir=str(tmp / "tfds"), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(raw)))
    built = pathlib.Path(builder.data_dir)
    skipped = builder.skipped
    bad = {o for v in skipped.values() for o, _ in v}
    meta = {"classnames": classnames, "skipped": skipped,
            "paths": {k: [ex.relpath for ex in v if ex.origin not in bad]
                      for k, v in examples.items()}}
    (built / sources.METADATA_FILE).write_text(json.dumps(meta))
    if not multi:  # the folder carries its split file: `data.prepared` alone is then enough
      splits_lib.write_split_file(built / sources.PREPARED_SPLIT_FILE, {
          k: [splits_lib.Item(ex.relpath, int(ex.label), classnames[int(ex.label)])
              for ex in v if ex.origin not in bad] for k, v in examples.items()})
    if skipped:
      logging.warning("%s: skipped %d unreadable image(s)", name, len(bad))
    if final.exists():
      shutil.rmtree(final)
    os.rename(built, final)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return final


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", required=True, help="catalog key (btmri, ...) or a new name")
  parser.add_argument("--raw", required=True, help="root of the reference layout / image root")
  parser.add_argument("--out", required=True)
  parser.add_argument("--split-file", default=None)
  parser.add_argument("--skip-bad-images", action="store_true")
  parser.add_argument("--force", action="store_true", help="rebuild even if already prepared")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.INFO)
  print(prepare(args.dataset, args.raw, args.out, args.split_file, args.skip_bad_images,
                args.force))


if __name__ == "__main__":
  main()
