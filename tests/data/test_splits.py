"""Split files: the real ones against the catalog, and clear errors on bad rows."""

import json

import pytest

from biomedjax.data import catalog
from biomedjax.data import splits
from tests.data.conftest import write_png, write_split


def _published(shared_dir):
  return sorted((shared_dir / "data/biomedcoop/splits").glob("split_*.json"))


def test_catalog_matches_published_split_files(shared_dir):
  files = _published(shared_dir)
  if not files:
    pytest.skip("no published split files")
  for f in files:
    info = next(i for i in catalog.DATASETS.values() if i.split_file_name == f.name)
    raw = json.loads(f.read_text())  # independent reading of the (label -> name) pairs
    pairs = {(l, c) for s in raw.values() for _, l, c in s}
    assert pairs == set(enumerate(info.classnames)), f.name
    got = splits.read_split_file(f, info.classnames)
    assert {k: [list(it) for it in v] for k, v in got.items()} == raw


def test_catalog_lookup():
  assert catalog.get("COVID_19").num_classes == 4
  assert len(catalog.DATASETS) == 11
  with pytest.raises(KeyError, match="known: btmri"):
    catalog.get("nope")


def _entry(path, label, name):
  return [path, label, name]


@pytest.mark.parametrize("bad, message", [
    (_entry("b/2.png", 5, "b"), r":\d+: label 5 out of range"),
    (_entry("b/2.png", 1, "a"), r":\d+: class name 'a' disagrees with label 1"),
    (_entry("b/2.png", "1", "b"), r":\d+: label must be an integer"),
    (["b/2.png", 1], r":\d+: expected \[path, label, classname\]"),
])
def test_bad_entries_name_file_and_line(tmp_path, bad, message):
  f = write_split(tmp_path / "split.json", {"train": [_entry("a/1.png", 0, "a"),
                                                      _entry("b/1.png", 1, "b"), bad]})
  with pytest.raises(splits.SplitError, match=message) as e:
    splits.read_split_file(f, ["a", "b"])
  line = int(str(e.value).split(":")[1])
  text_lines = f.read_text().splitlines()
  assert text_lines[line - 1].strip() == "[", "the reported line opens the bad entry"
  assert "b/2.png" in text_lines[line] or "b/2.png" in str(text_lines[line:line + 2])


def test_missing_image_and_empty_class(tmp_path):
  write_png(tmp_path / "img/a/1.png")
  f = write_split(tmp_path / "s.json", {"train": [_entry("a/1.png", 0, "a"),
                                                  _entry("a/404.png", 0, "a")]})
  with pytest.raises(splits.SplitError, match=r"s.json:8: image 'a/404.png' not found"):
    splits.read_split_file(f, ["a"], image_root=tmp_path / "img")
  with pytest.raises(splits.SplitError, match=r"no training image: 1 \(b\)"):
    splits.read_split_file(f, ["a", "b"])


def test_invalid_json_names_line(tmp_path):
  f = tmp_path / "s.json"
  f.write_text('{\n"train": [\n["a", 0, "a"],\n]\n}')
  with pytest.raises(splits.SplitError, match=r"s.json:4: invalid JSON"):
    splits.read_split_file(f)


def test_split_from_folders_is_seeded_and_proportional(tmp_path):
  for c, n in (("x", 10), ("y", 7)):
    for i in range(n):
      write_png(tmp_path / c / f"{i}.png", i)
  a = splits.split_from_folders(tmp_path, seed=1)
  assert a == splits.split_from_folders(tmp_path, seed=1)
  assert a != splits.split_from_folders(tmp_path, seed=2)
  count = lambda s, l: sum(it.label == l for it in a[s])
  assert [count(s, 0) for s in splits.SPLITS] == [5, 2, 3]
  assert [count(s, 1) for s in splits.SPLITS] == [4, 1, 2]  # round(3.5)=4, round(1.4)=1
  all_paths = sorted(it.path for v in a.values() for it in v)
  assert all_paths == sorted([f"x/{i}.png" for i in range(10)] + [f"y/{i}.png" for i in range(7)])
  splits.write_split_file(tmp_path / "out.json", a)
  assert splits.read_split_file(tmp_path / "out.json") == a
