"""The adapter baselines end to end from the launcher on the real BTMRI and BUSI samples.

One short run per method (tiny random-weight backbone, shortened schedules), in the reference
harness: the seed-1 images for run seed 2, augmented views encoded once, results.json and the
report written. BUSI's sample has no split file; one is written from its manifest. Skips where
``../shared/data/images`` is absent. The same methods on a CONVERTED BiomedCLIP checkpoint (and
through ``--sweep=packed``): tests/parity/test_adapters_converted.py.
"""

import csv
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

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


# ~60-120 s each on the busy 2-core box (~20 s of CPU): Tip-Adapter stays in the default suite,
# the other three are marked slow (`-m slow` runs them).
@pytest.mark.parametrize("method,dataset", [
    pytest.param("clip_adapter", "btmri", marks=pytest.mark.slow),
    ("tip_adapter", "busi"),
    pytest.param("tip_adapter_f", "btmri", marks=pytest.mark.slow),
    pytest.param("lp_plus_plus", "busi", marks=pytest.mark.slow)])
def test_runs_from_the_launcher(method, dataset, datasets, tmp_path):
  if dataset not in datasets:
    pytest.skip(f"{dataset} sample absent")
  split_file, image_root = datasets[dataset]
  workdir = tmp_path / "run"
  cmd = [sys.executable, "launch.py",
         f"--config=configs/{method}.py:dataset={dataset},shots=4,seed=2",
         "--config.model.preset=tiny", f"--config.data.split_file={split_file}",
         f"--config.data.image_root={image_root}", "--config.train.progress=False",
         f"--workdir={workdir}"]
  cmd += [f"--config.method.{k}={v}" for k, v in SHORT[method].items()]
  run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["method"] == method and results["seed"] == 2
  assert 0.0 <= results["test"]["accuracy"] <= 1.0
  selection = json.loads((workdir / "fewshot_selection.json").read_text())
  assert selection["seed"] == 1  # the harness: every run seed draws the seed-1 images
  assert len(selection["train"]) == 4 * (4 if dataset == "btmri" else 3)
  assert (workdir / "results.md").exists()
  assert "augmented view" in run.stderr
