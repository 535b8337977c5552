"""Split files: ``{"train"|"val"|"test": [[relative_path, label, classname], ...]}``.

This is the format of the BiomedCoOp release (Dassl's ``read_split``). Reading validates every
entry and reports problems as ``<file>:<line>: ...`` so a bad row can be fixed by hand; the
line of each entry is found by walking the JSON text, since ``json.load`` forgets positions.
Writing is atomic (temporary file + rename), so a crash never leaves a truncated split file.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
from typing import NamedTuple, Sequence

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp")


class Item(NamedTuple):
  path: str        # relative to the dataset's image root
  label: int
  classname: str


class SplitError(ValueError):
  """A split file (or folder tree) that cannot be used; the message names file and line."""


def _entries_with_lines(text: str, where: str):
  """Yields (split, line, raw_entry) in file order for a ``{split: [entry, ...]}`` document."""
  decoder = json.JSONDecoder()

  def skip(pos):
    while pos < len(text) and text[pos] in " \t\r\n":
      pos += 1
    return pos

  def expect(pos, char):
    pos = skip(pos)
    if pos >= len(text) or text[pos] != char:
      line = text.count("\n", 0, pos) + 1
      raise SplitError(f"{where}:{line}: expected {char!r} (a split file is "
                       '{"train": [[path, label, classname], ...], ...})')
    return pos + 1

  try:
    json.loads(text)
  except json.JSONDecodeError as e:
    raise SplitError(f"{where}:{e.lineno}: invalid JSON: {e.msg}") from None
  counted = [0, 1]  # (position, line there): counting incrementally keeps this linear

  def line_at(pos):
    counted[1] += text.count("\n", counted[0], pos)
    counted[0] = pos
    return counted[1]

  pos = expect(0, "{")
  if text[skip(pos)] == "}":
    return
  while True:
    key, pos = decoder.raw_decode(text, skip(pos))
    pos = expect(expect(pos, ":"), "[")
    if text[skip(pos)] != "]":
      while True:
        pos = skip(pos)
        entry, end = decoder.raw_decode(text, pos)
        yield key, line_at(pos), entry
        pos = skip(end)
        if text[pos] == "]":
          break
        pos = expect(pos, ",")
    pos = expect(pos, "]")
    if text[skip(pos)] == "}":
      return
    pos = expect(pos, ",")


def entry_lines(path) -> dict[str, list[int]]:
  """The line of every entry of a split file, per split, for error messages downstream."""
  out = {}
  for split, line, _ in _entries_with_lines(pathlib.Path(path).read_text(), str(path)):
    out.setdefault(split, []).append(line)
  return out


def _parse_entry(entry, where: str) -> Item:
  if not (isinstance(entry, list) and len(entry) == 3):
    raise SplitError(f"{where}: expected [path, label, classname], got {entry!r}")
  path, label, classname = entry
  if not isinstance(path, str) or not path:
    raise SplitError(f"{where}: path must be a non-empty string, got {path!r}")
  if isinstance(label, bool) or not isinstance(label, int):
    raise SplitError(f"{where}: label must be an integer, got {label!r}")
  if not isinstance(classname, str):
    raise SplitError(f"{where}: classname must be a string, got {classname!r}")
  return Item(path, label, classname)


class ImageRootError(SplitError):
  """A split file's image is not under the image root: the root is usually what is wrong."""


def _missing_image(where: str, rel: str, image_root, first: bool) -> str:
  """The one line for a missing image: a wrong image root when even the first image is absent
  (the usual mistake), else the split file's line."""
  root = pathlib.Path(image_root)
  if first or not root.is_dir():
    state = "is not a folder" if not root.is_dir() else f"does not hold {rel!r} ({where})"
    return (f"image root {root} {state}: pass --config.data.image_root=<the folder the split "
            f"file's paths are relative to>")
  return f"{where}: image {rel!r} not found under {root} (fix the split file at this line)"


def read_split_file(path, classnames: Sequence[str] | None = None, image_root=None
                    ) -> dict[str, list[Item]]:
  """Reads and validates a split file.

  Checks, each reported with file and line: entry shape and types; label in range; class name
  equal to ``classnames[label]`` (or, without ``classnames``, the same name for a label
  everywhere in the file); no empty class in "train"; and, with ``image_root``, that every image
  exists (a missing file would otherwise only fail hours into training).
  """
  path = pathlib.Path(path)
  text = path.read_text()
  out = {}
  names = dict(enumerate(classnames)) if classnames is not None else {}
  for split, line, entry in _entries_with_lines(text, str(path)):
    where = f"{path}:{line}"
    if split not in SPLITS:
      raise SplitError(f"{where}: unknown split {split!r}; expected one of {SPLITS}")
    item = _parse_entry(entry, where)
    _check_label(item, names, classnames is not None, where)
    if image_root is not None and not (pathlib.Path(image_root) / item.path).is_file():
      raise ImageRootError(_missing_image(where, item.path, image_root, not out))
    out.setdefault(split, []).append(item)
  _check_no_empty_class(out, names, classnames, path)
  return out


def _check_label(item: Item, names: dict, fixed: bool, where: str):
  if item.label < 0 or (fixed and item.label >= len(names)):
    raise SplitError(f"{where}: label {item.label} out of range for {len(names)} classes"
                     if fixed else f"{where}: negative label {item.label}")
  expected = names.setdefault(item.label, item.classname)
  if expected != item.classname:
    raise SplitError(f"{where}: class name {item.classname!r} disagrees with label "
                     f"{item.label} ({expected!r})")


def _check_no_empty_class(out, names, classnames, path):
  if not out.get("train"):
    raise SplitError(f"{path}: no 'train' split or an empty one")
  present = {item.label for item in out["train"]}
  n = len(classnames) if classnames is not None else max(names) + 1
  missing = [f"{label} ({names.get(label, '?')})" for label in range(n) if label not in present]
  if missing:
    raise SplitError(f"{path}: class(es) with no training image: {', '.join(missing)}")


def write_split_file(path, splits: dict[str, Sequence[Item]]):
  """Writes the reference format atomically (indent 4, as the published files)."""
  path = pathlib.Path(path)
  data = {k: [[it.path, it.label, it.classname] for it in v] for k, v in splits.items()}
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_text(json.dumps(data, indent=4))
  os.replace(tmp, path)


def list_images(folder: pathlib.Path) -> list[str]:
  """Image file names in ``folder``, sorted, hidden files skipped."""
  return sorted(p.name for p in folder.iterdir()
                if p.is_file() and not p.name.startswith(".")
                and p.suffix.lower() in IMAGE_EXTENSIONS)


def class_folders(image_dir) -> list[str]:
  """Class sub-folders of ``image_dir`` in sorted order (label = position), hidden ones skipped."""
  image_dir = pathlib.Path(image_dir)
  if not image_dir.is_dir():
    raise SplitError(f"{image_dir}: not a directory")
  folders = sorted(p.name for p in image_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
  if not folders:
    raise SplitError(f"{image_dir}: no class folders")
  return folders


def split_from_folders(image_dir, seed: int, classnames: Sequence[str] | None = None,
                       p_train: float = 0.5, p_val: float = 0.2) -> dict[str, list[Item]]:
  """A seeded train/val/test partition of a class-per-folder tree (Dassl ``read_and_split_data``).

  Folders are taken in sorted order (label = position) and each class is shuffled and cut
  separately with ``round(n * p)``, so every class keeps its proportions. ``classnames``
  (label order) replaces the folder names in the file.
  """
  image_dir = pathlib.Path(image_dir)
  folders = class_folders(image_dir)
  if classnames is not None and len(classnames) != len(folders):
    raise SplitError(f"{image_dir}: {len(folders)} class folders {folders} but "
                     f"{len(classnames)} class names {list(classnames)}")
  rng = random.Random(seed)
  out = {s: [] for s in SPLITS}
  for label, folder in enumerate(folders):
    names = list_images(image_dir / folder)
    if not names:
      raise SplitError(f"{image_dir / folder}: empty class folder")
    rng.shuffle(names)
    n_train, n_val = round(len(names) * p_train), round(len(names) * p_val)
    name = classnames[label] if classnames is not None else folder
    cuts = {"train": names[:n_train], "val": names[n_train:n_train + n_val],
            "test": names[n_train + n_val:]}
    for split, chosen in cuts.items():
      out[split].extend(Item(f"{folder}/{n}", label, name) for n in chosen)
  return out
