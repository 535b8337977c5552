"""A researcher's day on real images (the BTMRI sample in ../shared; skipped where absent), with
the tiny random-weight backbone: train CoOp and the linear probe -> predict the test images ->
the accuracy in preds.csv equals results.json's -> export -> load in a fresh process (the
README's "Using a trained method from Python" code, verbatim) -> the same predictions.

One module-scoped fixture runs everything once (short runlocal schedules); the tests assert on it.
"""

import csv
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from biomedjax.tools import export, predict

REPO = pathlib.Path(__file__).resolve().parents[2]
METHODS = {"coop": "configs/coop.py:shots=4,runlocal",
           "linear_probe": "configs/linear_probe.py:shots=4"}


def _py(*args, cwd=REPO):
  # As an installed package would be (`pip install .`), from any folder.
  env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
  run = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                       timeout=600, env=env)
  assert run.returncode == 0, run.stderr[-3000:]
  return run


def readme_snippet() -> str:
  text = (REPO / "README.md").read_text()
  section = text[text.index("## Using a trained method from Python"):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture(scope="module")
def journey(shared_dir, tmp_path_factory):
  btmri = shared_dir / "data/images/BTMRI"
  if not (btmri / "split_BTMRI.json").is_file():
    pytest.skip(f"{btmri} is absent")
  tmp = tmp_path_factory.mktemp("journey")
  split = json.loads((btmri / "split_BTMRI.json").read_text())
  test_csv = tmp / "test_images.csv"
  with open(test_csv, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["path"])
    w.writerows([[str(btmri / "images" / p)] for p, _, _ in split["test"]])
  out = {}
  for name, config in METHODS.items():
    workdir = tmp / name
    _py("launch.py", f"--config={config}", f"--workdir={workdir}",
        "--config.model.preset=tiny", "--config.data.dataset=my_btmri",
        f"--config.data.split_file={btmri / 'split_BTMRI.json'}",
        f"--config.data.image_root={btmri / 'images'}", "--config.train.progress=False")
    preds = tmp / f"{name}_preds.csv"
    # The CLIs' own main() in this process (each subprocess would pay for importing JAX again).
    assert predict.main([f"--workdir={workdir}", f"--images={test_csv}", f"--out={preds}",
                         f"--labels={btmri / 'split_BTMRI.json'}"]) == 0
    # The run checked in one command: its own test split, split file and image root.
    split_preds = tmp / f"{name}_split_preds.csv"
    assert predict.main([f"--workdir={workdir}", "--split=test", f"--out={split_preds}"]) == 0
    exported = tmp / f"{name}_export" / "method.safetensors"
    assert export.main([f"--workdir={workdir}", f"--out={exported}"]) == 0
    # The README code, run as written in a fresh process, in a folder holding the exported file
    # (as method.safetensors) and two test images (as scan1.png, scan2.png).
    first = [btmri / "images" / p for p, _, _ in split["test"][:2]]
    for i, src in enumerate(first):
      shutil.copy(src, exported.parent / f"scan{i + 1}.png")
    code = readme_snippet() + "\nimport json; print('PROBS', json.dumps(probs.tolist()))\n"
    fresh = _py("-c", code, cwd=exported.parent)
    probs = json.loads(fresh.stdout.split("PROBS", 1)[1])
    out[name] = dict(workdir=workdir, preds=preds, probs=np.array(probs), first=first,
                     stdout=fresh.stdout, split_preds=split_preds)
  return out


def _rows(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


@pytest.mark.parametrize("name", list(METHODS))
def test_preds_csv_accuracy_equals_results_json(journey, name):
  run = journey[name]
  rows = _rows(run["preds"])
  results = json.loads((run["workdir"] / "results.json").read_text())
  classes = results["test"]["classnames"]
  assert list(rows[0]) == ["path", "prediction", *[f"p_{c}" for c in classes], "label", "correct"]
  assert len(rows) == results["test"]["num_examples"] == 48
  acc = np.mean([int(r["correct"]) for r in rows])
  assert acc == pytest.approx(results["test"]["accuracy"], abs=1e-12)
  probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
  np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
  assert [r["prediction"] for r in rows] == [classes[i] for i in probs.argmax(1)]


@pytest.mark.parametrize("name", list(METHODS))
def test_predict_split_test_reproduces_results_json(journey, name):
  run = journey[name]
  rows = _rows(run["split_preds"])
  results = json.loads((run["workdir"] / "results.json").read_text())
  assert len(rows) == results["test"]["num_examples"]
  assert np.mean([int(r["correct"]) for r in rows]) == results["test"]["accuracy"]


@pytest.mark.parametrize("name", list(METHODS))
def test_exported_method_loaded_in_a_fresh_process_predicts_the_same(journey, name):
  run = journey[name]
  rows = _rows(run["preds"])[:2]
  classes = json.loads((run["workdir"] / "results.json").read_text())["test"]["classnames"]
  expected = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
  np.testing.assert_allclose(run["probs"], expected, atol=1e-5)  # the CSV has 6 decimals
  assert [classes[i] for i in run["probs"].argmax(1)] == [r["prediction"] for r in rows]


def test_every_trained_state_is_persisted_and_recorded(journey):
  lp = json.loads((journey["linear_probe"]["workdir"] / "results.json").read_text())
  state = lp["trained_state"]
  assert state["file"] == "trained_state.safetensors"
  assert state["shapes"]["W"] == [32, 4] and state["shapes"]["b"] == [4]
  assert state["scalars"]["C"] > 0
  coop = json.loads((journey["coop"]["workdir"] / "results.json").read_text())
  assert coop["trained_state"]["shapes"]["ctx"] == [4, 64]
  assert coop["provenance"]["backbone"]["label"] == "RANDOM tiny"
  assert "RANDOM" in (journey["coop"]["workdir"] / "results.md").read_text()
