"""ArrayRecord preparation: content and order, idempotence, atomicity, bad images."""

import json

import numpy as np
import pytest

from biomedjax.data import fewshot
from biomedjax.data import prepare
from biomedjax.data import sources
from biomedjax.data import splits
from biomedjax.data import transforms
from tests.data.conftest import write_png


def test_prepared_records_equal_files_in_split_order(synthetic_tree, tmp_path):
  root, split_file = synthetic_tree
  out = prepare.prepare("syn", root, tmp_path, split_file=split_file)
  raw = json.loads(split_file.read_text())
  for split in ("train", "val", "test"):
    src = sources.ArrayRecordSource(out, split)
    assert len(src) == len(raw[split])
    for i, (path, label, _) in enumerate(raw[split]):
      record = src[i]
      assert record["path"] == path and record["label"] == label
      assert record["image"] == (root / path).read_bytes()
  chosen = fewshot.fewshot_splits(splits.read_split_file(split_file), 2, seed=1)
  sub = sources.ArrayRecordSource(out, "train").select(chosen["train"])
  assert [sub[i]["path"] for i in range(len(sub))] == [it.path for it in chosen["train"]]


def test_rerun_is_a_noop_and_stale_temp_dirs_are_removed(synthetic_tree, tmp_path):
  root, split_file = synthetic_tree
  out = prepare.prepare("syn", root, tmp_path, split_file=split_file)
  stamp = (out / sources.METADATA_FILE).stat().st_mtime_ns
  (tmp_path / ".tmp-syn-999").mkdir()  # as left by a killed run
  assert prepare.prepare("syn", root, tmp_path, split_file=split_file) == out
  assert (out / sources.METADATA_FILE).stat().st_mtime_ns == stamp
  prepare.prepare("syn", root, tmp_path, split_file=split_file, force=True)
  assert not list(tmp_path.glob(".tmp-*"))


def _tree_with_corrupt_image(tmp_path):
  for c in ("a", "b"):
    for i in range(3):
      write_png(tmp_path / "raw" / c / f"{i}.png", i)
  good = (tmp_path / "raw/b/1.png").read_bytes()
  (tmp_path / "raw/b/1.png").write_bytes(good[: len(good) // 2])
  split_file = tmp_path / "split.json"
  splits.write_split_file(split_file, {"train": [splits.Item(f"{c}/{i}.png", l, c)
                                                 for l, c in enumerate("ab") for i in range(3)]})
  return split_file


def test_corrupt_image_fails_with_line_and_leaves_nothing(tmp_path):
  split_file = _tree_with_corrupt_image(tmp_path)
  line = splits.entry_lines(split_file)["train"][4]
  with pytest.raises(transforms.BadImageError, match=rf"split.json:{line}: .*b/1.png"):
    prepare.prepare("custom", tmp_path / "raw", tmp_path / "out", split_file=split_file)
  assert list((tmp_path / "out").iterdir()) == []


def test_skip_bad_images(tmp_path):
  split_file = _tree_with_corrupt_image(tmp_path)
  out = prepare.prepare("custom", tmp_path / "raw", tmp_path / "out", split_file=split_file,
                        skip_bad_images=True)
  src = sources.ArrayRecordSource(out, "train")
  assert len(src) == 5 and "b/1.png" not in src.paths
  assert len(json.loads((out / sources.METADATA_FILE).read_text())["skipped"]["train"]) == 1


def test_missing_split_file_is_generated_from_folders(tmp_path):
  for c in ("CNV", "DME", "DRUSEN", "NORMAL"):
    for i in range(5):
      write_png(tmp_path / "raw/OCTMNIST/OCTMNIST" / c / f"{i}.png", i)
  out = prepare.prepare("octmnist", tmp_path / "raw", tmp_path / "out")
  generated = splits.read_split_file(tmp_path / "out/split_OCTMNIST.json",
                                     ["choroidal neovascularization", "diabetic macular edema",
                                      "drusen", "normal OCT scan"])
  # per class: round(2.5) = 2 (Python rounds half to even, as in Dassl), round(1.0) = 1, rest 2
  assert [len(generated[s]) for s in splits.SPLITS] == [8, 4, 8]
  src = sources.ArrayRecordSource(out, "test")
  assert src.paths == [it.path for it in generated["test"]]
  assert np.unique([src[i]["label"] for i in range(len(src))]).tolist() == [0, 1, 2, 3]
