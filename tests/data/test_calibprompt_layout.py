"""CalibPrompt's dataset layout: labels, class names, few-shot rule, errors."""

import random

import pytest

from biomedjax.data import calibprompt_layout as layout
from biomedjax.data import fewshot, splits
from biomedjax.data.splits import SplitError


def _make(root, counts=None, classnames="covid covid\nnormal normal\n"):
  counts = counts or {"train": {"normal": 9, "covid": 10}, "test": {"normal": 3, "covid": 4}}
  d = root / "covid"
  for split, per in counts.items():
    for folder, n in per.items():
      (d / "images" / split / folder).mkdir(parents=True, exist_ok=True)
      for i in range(n):
        (d / "images" / split / folder / f"{folder}-{(i * 7) % n}.png").write_bytes(b"x")
  (d / "images" / "train" / "covid" / ".hidden").write_bytes(b"x")
  (d / "classnames.txt").write_text(classnames)
  return d


def test_labels_names_and_fewshot(tmp_path):
  _make(tmp_path)
  items, image_root = layout.read_layout(tmp_path, "covid")
  assert image_root == tmp_path / "covid" / "images"
  assert {(i.label, i.classname) for i in items["train"]} == {(0, "covid"), (1, "normal")}
  assert len(items["train"]) == 19 and len(items["test"]) == 7 and "val" not in items
  assert all((image_root / i.path).is_file() for i in items["train"] + items["test"])
  paths = [i.path for i in items["train"] if i.label == 0]
  assert paths == sorted(paths)
  # The reference's rule: random.seed(1), per label in order of first appearance, sample(8).
  chosen = fewshot.fewshot_splits(items, 8, 1)
  rng = random.Random(1)
  expected = (rng.sample([i for i in items["train"] if i.label == 0], 8)
              + rng.sample([i for i in items["train"] if i.label == 1], 8))
  assert chosen["train"] == expected and chosen["val"] == [] and chosen["test"] == items["test"]
  # Through the split file the run reads.
  split_file, _ = layout.write_split_file(tmp_path, "covid", tmp_path / "s.json")
  assert splits.read_split_file(split_file, None, image_root) == items


def test_zero_shot_templates():
  assert layout.zero_shot_template("COVID") == "A chest X-ray image of {} patient"
  assert layout.zero_shot_template("rsna18") == "A chest X-ray image of {} patient"
  assert layout.zero_shot_template("busi") == "An image of {}."


def test_errors_name_the_file(tmp_path):
  with pytest.raises(SplitError, match="not a directory"):
    layout.read_layout(tmp_path, "covid")
  _make(tmp_path, classnames="covid covid\n")
  with pytest.raises(SplitError, match="'normal' is not in .*classnames.txt"):
    layout.read_layout(tmp_path, "covid")
  (tmp_path / "covid" / "classnames.txt").write_text("covid\n")
  with pytest.raises(SplitError, match=r"classnames.txt:1: .* no class name"):
    layout.read_layout(tmp_path, "covid")
  (tmp_path / "covid" / "classnames.txt").unlink()
  with pytest.raises(SplitError, match="classnames.txt: missing"):
    layout.read_layout(tmp_path, "covid")
