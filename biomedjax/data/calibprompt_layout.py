"""CalibPrompt's dataset layout (BAPLe preparation) as a biomedjax split file.

Layout (``datasets/covid.py``, ``datasets/rsna18.py`` of ``iabh1shekbasu/CalibPrompt``)::

  <root>/<name>/classnames.txt            one line per class: "<folder> <class name words>"
  <root>/<name>/images/train/<folder>/*   every non-hidden file is an image
  <root>/<name>/images/test/<folder>/*

label = index of the folder in the sorted folder list of the split; class name from
classnames.txt. There is no validation split: the reference passes test as val and keeps the
last-epoch model, so nothing is selected on it. Here the split file holds train and test only
(test is evaluated once, as "test"); post-hoc temperature scaling then fits on the few-shot train
set, and the run's results say so.

Few-shot sampling is the reference's Dassl rule (``biomedjax.data.fewshot``), applied to train
only. quirk: the reference lists files with an unsorted ``os.listdir``, so its sample depends on
the filesystem's order (it caches the pickle it drew). Files are sorted by default here
(``sort_paths=True``), which makes the selection reproducible; ``sort_paths=False`` takes the
directory order as the reference does.

Zero-shot templates of the reference (``trainers/classification/zsclip.py:36-42``) are in
``ZS_TEMPLATES``; any other dataset uses "An image of {}.". The reference looks them up by
``cfg.DATASET.NAME.lower()`` ("kathercolon" for Kather, ``configs/datasets/kather.yaml``), the same
template for every backbone; its prompt learners build "X X ... X {name}." for every backbone.

``DATASETS``: the study's five datasets with the reference's class names in label order (the
BAPLe ``classnames.txt`` files the reference's DATASETS.md points to,
``asif-hanif/baple:datasets/dataset_preprocessing/<name>/classnames.txt``; label = index of the
folder in sorted order). ``check_classnames`` compares a layout's names with them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from biomedjax.data import splits as splits_lib
from biomedjax.data.splits import Item, SplitError

SPLITS = ("train", "test")
ZS_TEMPLATES = {
    "covid": "A chest X-ray image of {} patient",      # no final period (reference)
    "rsna18": "A chest X-ray image of {} patient",
    "kather": "An H&E image of {}.",
    "pannuke": "An H&E image patch of {} skin tissue.",
    "digestpath": "An H&E image patch of {} tissue.",
}
DEFAULT_ZS_TEMPLATE = "An image of {}."


@dataclasses.dataclass(frozen=True)
class LayoutDataset:
  """One study dataset: its folder name and, in sorted-folder (label) order, folders and names."""
  name: str
  folders: tuple[str, ...]
  classnames: tuple[str, ...]
  modality: str

  @property
  def num_classes(self) -> int:
    return len(self.classnames)

  @property
  def template(self) -> str:
    return zero_shot_template(self.name)

  def classnames_txt(self) -> str:
    """The reference's classnames.txt text (the BAPLe file's lines)."""
    return "".join(f"{f} {n}\n" for f, n in zip(self.folders, self.classnames))


def _dataset(name, modality, *pairs):
  pairs = sorted(pairs)  # label = index of the folder in the sorted folder list
  return LayoutDataset(name, tuple(f for f, _ in pairs), tuple(n for _, n in pairs), modality)


DATASETS = {
    "covid": _dataset("covid", "chest x-ray", ("normal", "normal"), ("covid", "covid")),
    "rsna18": _dataset("rsna18", "chest x-ray", ("normal", "normal"),
                       ("no_lung_opacity_not_normal", "no lung opacity, not normal"),
                       ("lung_opacity", "lung opacity")),
    "kather": _dataset("kather", "histopathology", ("ADI", "adipose tissue"),
                       ("BACK", "background"), ("DEB", "debris"), ("LYM", "lymphocytes"),
                       ("MUC", "mucus"), ("MUS", "smooth muscle"),
                       ("NORM", "normal colon mucosa"), ("STR", "cancer-associated stroma"),
                       ("TUM", "colorectal adenocarcinoma epithelium")),
    "pannuke": _dataset("pannuke", "histopathology", ("benign", "benign"),
                        ("malignant", "malignant")),
    "digestpath": _dataset("digestpath", "histopathology", ("benign", "benign"),
                           ("malignant", "malignant")),
}


def check_classnames(name: str, classnames, where) -> None:
  """A study dataset's classes (label order) must be the reference's: the prompts are built from
  them, so another name is another experiment. Unknown datasets are not checked."""
  known = DATASETS.get(name.lower())
  if known is not None and tuple(classnames) != known.classnames:
    raise SplitError(f"{where}: classes {tuple(classnames)} (label order) differ from the "
                     f"reference's {name} classes {known.classnames}; fix classnames.txt (the "
                     f"BAPLe file: {known.classnames_txt()!r})")


def zero_shot_template(name: str) -> str:
  return ZS_TEMPLATES.get(name.lower(), DEFAULT_ZS_TEMPLATE)


def read_classnames(path: pathlib.Path) -> dict[str, str]:
  """classnames.txt -> {folder: class name}; a line is "<folder> <name words>"."""
  if not path.is_file():
    raise SplitError(f"{path}: missing (CalibPrompt layout: one '<folder> <class name>' per line)")
  out = {}
  for n, line in enumerate(path.read_text().splitlines(), 1):
    words = line.strip().split(" ")
    if not words[0]:
      continue
    if len(words) < 2:
      raise SplitError(f"{path}:{n}: {line!r} has a folder but no class name")
    if words[0] in out:
      raise SplitError(f"{path}:{n}: folder {words[0]!r} listed twice")
    out[words[0]] = " ".join(words[1:])
  return out


def _files(folder: pathlib.Path, sort_paths: bool) -> list[str]:
  names = [n for n in os.listdir(folder) if not n.startswith(".")]
  return sorted(names) if sort_paths else names


def read_split(dataset_dir, split: str, classnames: dict[str, str], sort_paths: bool = True
               ) -> list[Item]:
  """Items of ``images/<split>``, paths relative to ``<dataset_dir>/images``."""
  split_dir = pathlib.Path(dataset_dir) / "images" / split
  folders = splits_lib.class_folders(split_dir)
  items = []
  for label, folder in enumerate(folders):
    if folder not in classnames:
      raise SplitError(f"{split_dir / folder}: folder {folder!r} is not in "
                       f"{pathlib.Path(dataset_dir) / 'classnames.txt'}")
    names = _files(split_dir / folder, sort_paths)
    if not names:
      raise SplitError(f"{split_dir / folder}: empty class folder")
    items += [Item(f"{split}/{folder}/{n}", label, classnames[folder]) for n in names]
  return items


def read_layout(root, name: str, sort_paths: bool = True
                ) -> tuple[dict[str, list[Item]], pathlib.Path]:
  """-> ({"train": items, "test": items}, image root) for ``<root>/<name>``."""
  dataset_dir = pathlib.Path(root) / name
  if not dataset_dir.is_dir():
    raise SplitError(f"{dataset_dir}: not a directory (CalibPrompt layout "
                     "<root>/<name>/images/{train,test}/<class folder>/ + classnames.txt)")
  classnames = read_classnames(dataset_dir / "classnames.txt")
  items = {s: read_split(dataset_dir, s, classnames, sort_paths) for s in SPLITS}
  order = {}
  for it in items["train"] + items["test"]:
    if order.setdefault(it.label, it.classname) != it.classname:
      raise SplitError(f"{dataset_dir / 'images'}: label {it.label} is {order[it.label]!r} in one "
                       f"split and {it.classname!r} in the other; train and test must have the "
                       "same class folders")
  check_classnames(name, [order[k] for k in sorted(order)], dataset_dir / "classnames.txt")
  return items, dataset_dir / "images"


def write_split_file(root, name: str, out_path, sort_paths: bool = True
                     ) -> tuple[pathlib.Path, pathlib.Path]:
  """Writes the layout as a biomedjax split file -> (split file, image root)."""
  items, image_root = read_layout(root, name, sort_paths)
  out_path = pathlib.Path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  splits_lib.write_split_file(out_path, items)
  return out_path, image_root
