"""Few-shot selection against an independent re-implementation of Dassl's rule."""

import collections
import json
import math
import random
import subprocess
import sys

import pytest

from biomedjax.data import fewshot
from biomedjax.data import splits

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def dassl_reference(raw_split, shots, seed):
  """Dassl as written: global random.seed, defaultdict by label, random.sample, train then val."""
  random.seed(seed)
  out = {}
  for split, k in (("train", shots), ("val", min(shots, 4))):
    tracker = collections.defaultdict(list)
    for entry in raw_split[split]:
      tracker[entry[1]].append(entry)
    chosen = []
    for _, entries in tracker.items():
      chosen.extend(random.sample(entries, k) if len(entries) >= k else entries)
    out[split] = [e[0] for e in chosen]
  return out


@pytest.mark.parametrize("name", ["BUSI", "KneeXray", "Kvasir", "RETINA", "BTMRI"])
def test_matches_dassl_on_published_splits(shared_dir, name):
  f = shared_dir / f"data/biomedcoop/splits/split_{name}.json"
  if not f.is_file():
    pytest.skip(f"{f} absent")
  raw = json.loads(f.read_text())
  parsed = splits.read_split_file(f)
  for shots in (1, 2, 4, 8, 16):
    for seed in (1, 2, 3):
      got = fewshot.selection(fewshot.fewshot_splits(parsed, shots, seed))
      assert got == dassl_reference(raw, shots, seed), (name, shots, seed)


def test_fewer_items_than_shots_takes_all():
  items = [splits.Item(f"{l}/{i}", l, str(l)) for l in (1, 0) for i in range(3 if l else 8)]
  got = fewshot.fewshot_splits({"train": items, "val": items}, 4, seed=1)
  train_labels = [it.label for it in got["train"]]
  assert train_labels == [1, 1, 1, 0, 0, 0, 0]  # label 1 first: order of first appearance


def test_cli_prints_selection(shared_dir):
  f = shared_dir / "data/biomedcoop/splits/split_BUSI.json"
  if not f.is_file():
    pytest.skip(f"{f} absent")
  out = subprocess.run([sys.executable, "-m", "biomedjax.data.fewshot", "--split-file", str(f),
                        "--shots", "4", "--seed", "2"], cwd=REPO, check=True,
                       capture_output=True, text=True).stdout
  assert json.loads(out) == dassl_reference(json.loads(f.read_text()), 4, 2)


def reference_subsample(items, which):
  labels = sorted(set(l for _, l, _ in items["train"]))
  m = math.ceil(len(labels) / 2)
  kept = labels[:m] if which == "base" else labels[m:]
  return {k: [(p, kept.index(l), c) for p, l, c in v if l in kept] for k, v in items.items()}


@pytest.mark.parametrize("n_classes", [3, 4, 5, 8])
@pytest.mark.parametrize("which", ["base", "new"])
def test_base_to_novel_relabelling(n_classes, which):
  order = [l for l in (2, 0, 1, 4, 3, 7, 6, 5) if l < n_classes]  # first appearance != sorted
  items = {s: [splits.Item(f"{s}{l}_{i}", l, f"c{l}") for l in order for i in range(2)]
           for s in ("train", "val", "test")}
  got = fewshot.subsample_classes(items, which)
  assert {k: [tuple(it) for it in v] for k, v in got.items()} == reference_subsample(items, which)
  m = math.ceil(n_classes / 2)
  expected_names = [f"c{l}" for l in (range(m) if which == "base" else range(m, n_classes))]
  assert fewshot.classnames_of(got["train"]) == expected_names


def test_write_selection(tmp_path):
  items = {"train": [splits.Item("a.png", 0, "a")], "val": []}
  fewshot.write_selection(tmp_path / "run/fewshot.json", items, shots=1, seed=1)
  data = json.loads((tmp_path / "run/fewshot.json").read_text())
  assert data == {"shots": 1, "seed": 1, "train": [["a.png", 0, "a"]], "val": []}
