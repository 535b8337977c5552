"""The adapter baselines' real-data samples and short schedules, for the launcher tests.

``datasets``: the BTMRI and BUSI samples (BUSI's has no split file; one is written from its
manifest); skips where ``../shared/data/images`` is absent. ``SHORT``: per-method overrides that
keep a run to seconds. Used by tests/parity/test_adapters_converted.py (the four methods from
the launcher on a converted checkpoint, in the reference harness).
"""

import csv
import json

import pytest

SHORT = {  # method -> --config.method overrides that keep a run to seconds
    "clip_adapter": {"epochs": 2},
    "tip_adapter": {"search_step": "(20,20)"},
    "tip_adapter_f": {"epochs": 2, "init_alpha_scale": 2, "search_step": "(20,20)"},
    "lp_plus_plus": {"epochs": 20},
}


@pytest.fixture(scope="module")
def datasets(shared_dir, tmp_path_factory):
  """-> {dataset key: (split file, image root)} for the samples that exist."""
  images = shared_dir / "data" / "images"
  out = {}
  if (images / "BTMRI" / "split_BTMRI.json").exists():
    out["btmri"] = (images / "BTMRI" / "split_BTMRI.json", images / "BTMRI" / "images")
  if (images / "BUSI" / "manifest.csv").exists():
    split = {"train": [], "val": [], "test": []}
    with open(images / "BUSI" / "manifest.csv") as f:
      for row in csv.DictReader(f):
        split[row["split"]].append([row["image"], int(row["label"]), row["classname"]])
    path = tmp_path_factory.mktemp("busi") / "split_BUSI.json"
    path.write_text(json.dumps(split))
    out["busi"] = (path, images / "BUSI" / "images")
  if not out:
    pytest.skip(f"no image samples under {images}")
  return out

