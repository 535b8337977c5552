"""Few-shot sampling and the base-to-novel class split, exactly as Dassl/BiomedCoOp do them.

Reference rule (``DatasetBase.generate_fewshot_dataset``): seed Python's ``random`` with the run
seed; group a split's items by label in order of first appearance; per label take
``random.sample(items, K)``, or all items when fewer than K; do "train" with K and then "val"
with min(K, 4), drawing from the same random stream. A private ``random.Random(seed)`` produces
the same stream as ``random.seed(seed)`` without touching global state.

Base-to-novel (``subsample_classes``): the labels present in "train", sorted; m = ceil(n / 2);
"base" keeps the first m, "new" the rest, each relabelled from 0 in sorted order. It is applied
after few-shot sampling.

CLI: ``python -m biomedjax.data.fewshot --split-file F --shots K --seed S`` prints
``{"train": [paths], "val": [paths]}`` in selection order.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import random
from typing import Sequence

from biomedjax.data import splits as splits_lib
from biomedjax.data.splits import Item


def group_by_label(items: Sequence[Item]) -> dict[int, list[Item]]:
  """Items per label, labels in order of first appearance (a dict keeps insertion order)."""
  groups = {}
  for item in items:
    groups.setdefault(item.label, []).append(item)
  return groups


def sample_per_label(items: Sequence[Item], shots: int, rng: random.Random) -> list[Item]:
  """K items per label with ``rng.sample``; all of a label's items when it has fewer than K."""
  if shots < 1:
    return list(items)
  chosen = []
  for group in group_by_label(items).values():
    chosen.extend(rng.sample(group, shots) if len(group) >= shots else group)
  return chosen


def fewshot_splits(splits: dict[str, Sequence[Item]], shots: int, seed: int
                   ) -> dict[str, list[Item]]:
  """The reference's few-shot train and val sets for ``shots`` and ``seed``; test is untouched."""
  rng = random.Random(seed)
  out = dict(splits)
  out["train"] = sample_per_label(splits["train"], shots, rng)
  out["val"] = sample_per_label(splits.get("val", []), min(shots, 4), rng)
  return out


def subsample_classes(splits: dict[str, Sequence[Item]], subsample: str
                      ) -> dict[str, list[Item]]:
  """Keeps the "base" or "new" half of the classes (or "all"), relabelled from 0."""
  if subsample == "all":
    return {k: list(v) for k, v in splits.items()}
  if subsample not in ("base", "new"):
    raise ValueError(f"subsample must be 'all', 'base' or 'new', got {subsample!r}")
  labels = sorted({item.label for item in splits["train"]})
  m = math.ceil(len(labels) / 2)
  kept = labels[:m] if subsample == "base" else labels[m:]
  relabel = {old: new for new, old in enumerate(kept)}
  return {k: [Item(it.path, relabel[it.label], it.classname) for it in v if it.label in relabel]
          for k, v in splits.items()}


def classnames_of(items: Sequence[Item]) -> list[str]:
  """Class names in label order, as a (relabelled) split defines them."""
  names = {item.label: item.classname for item in items}
  return [names[label] for label in sorted(names)]


def selection(splits: dict[str, Sequence[Item]]) -> dict[str, list[str]]:
  """``{"train": [paths], "val": [paths]}`` in selection order, for auditing a run."""
  return {k: [item.path for item in splits[k]] for k in ("train", "val") if k in splits}


def write_selection(path, splits: dict[str, Sequence[Item]], **meta):
  """Writes the chosen files (plus ``meta`` such as shots and seed) atomically as JSON."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  data = dict(meta, **{k: [[it.path, it.label, it.classname] for it in splits[k]]
                       for k in ("train", "val") if k in splits})
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  tmp.write_text(json.dumps(data, indent=1))
  os.replace(tmp, path)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--split-file", required=True)
  parser.add_argument("--shots", type=int, required=True)
  parser.add_argument("--seed", type=int, required=True)
  parser.add_argument("--subsample", default="all", choices=("all", "base", "new"))
  args = parser.parse_args(argv)
  chosen = fewshot_splits(splits_lib.read_split_file(args.split_file), args.shots, args.seed)
  print(json.dumps(selection(subsample_classes(chosen, args.subsample))))


if __name__ == "__main__":
  main()
