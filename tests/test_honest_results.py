"""A result never says something untrue about what produced it (issue 22), on one tiny own-data run:

own knee images in a split file named ``knee.json`` and no ``dataset=`` -> the run is named
``knee`` and takes KgCoOp's generic W (not btmri's row), and the log and results.md say which
settings table applied; ``shots=4`` with a class of 3 training images -> warned before training,
effective K per class in results.json and results.md; the schedule and config are recorded; the
run's phases are logged, with the first step's compilation outside the progress clock, and the
run ends with the path of its results and figures, a loss curve among them.

One module-scoped run (tiny random backbone, runlocal schedule) serves every assertion.
"""

import json
import pathlib
import subprocess
import sys

import pytest

from biomedjax.data import splits
from tests.data.conftest import write_png

REPO = pathlib.Path(__file__).resolve().parents[1]
TRAIN = {"normal": 5, "mild": 5, "severe": 3}  # "severe" is short of K=4


@pytest.fixture(scope="module")
def knee(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("knee")
  items = {"train": [], "val": [], "test": []}
  for label, (name, n_train) in enumerate(TRAIN.items()):
    for split, n in (("train", n_train), ("val", 1), ("test", 2)):
      for i in range(n):
        rel = f"{name}/{split}{i}.png"
        write_png(tmp / "img" / rel, seed=100 * label + 10 * len(split) + i, size=(32, 32))
        items[split].append(splits.Item(rel, label, name))
  split_file = tmp / "knee.json"
  splits.write_split_file(split_file, items)
  workdir = tmp / "run"
  run = subprocess.run(
      [sys.executable, "launch.py", "--config=configs/kgcoop.py:shots=4,runlocal",
       "--config.model.preset=tiny", f"--config.data.split_file={split_file}",
       f"--config.data.image_root={tmp / 'img'}", f"--workdir={workdir}"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  return workdir, results, run.stderr, (workdir / "results.md").read_text()


def test_own_split_file_names_the_run_and_takes_the_generic_settings(knee):
  workdir, results, log, md = knee
  assert results["dataset"] == "knee"
  assert results["config"]["method.w"] == 2.0  # the generic W (btmri's row happens to equal it)
  assert results["dataset_settings"].startswith("kgcoop few-shot W: generic defaults 2.0")
  assert "'knee' is not in the table" in results["dataset_settings"]
  assert "# kgcoop on knee: 4-shot" in md
  assert f"Per-dataset settings: {results['dataset_settings']}" in md
  assert f"per-dataset settings: {results['dataset_settings']}" in log
  assert "knee.json" in md


def test_effective_k_is_warned_before_training_and_recorded(knee):
  workdir, results, log, md = knee
  assert results["effective_shots"] == {"normal": 4, "mild": 4, "severe": 3}
  assert "(effective K < 4: severe=3)" in md.splitlines()[0]
  assert "severe 3 (short)" in md
  warned = log.index("K=4 but 1 class(es) have fewer training images")
  assert warned < log.index("compiling the train step")


def test_schedule_and_config_are_recorded(knee):
  _, results, _, md = knee
  assert results["schedule"]["epochs"] == 2 and results["schedule"]["optimizer"] == "sgd"
  assert results["config"]["optim.epochs"] == 2 and results["config"]["data.shots"] == 4
  assert results["schedule"]["batch_size"] == 11  # kgcoop's 128, capped at the 4+4+3 images
  assert ("Schedule: 2 epochs, batch 11 (data.batch_size 128 capped at the training set) x 1 "
          "steps, sgd lr 0.002") in md


def test_phases_are_logged_and_the_end_says_where_the_results_are(knee):
  workdir, _, log, _ = knee
  order = ["reading the split file and checking every image", "building the backbone",
           "compiling the train step", "train step compiled and run once in"]
  positions = [log.index(p) for p in order]
  assert positions == sorted(positions)
  end = log.strip().splitlines()[-1]
  assert f"results: {workdir}/results.md and results.json" in end
  assert "loss_curve.png" in end and (workdir / "loss_curve.png").stat().st_size > 5000
  assert "Waiting for previous save" not in log


def test_the_bar_after_compilation_never_shows_a_negative_rate():
  """``restart_clock`` inside ``for i in bar`` (where tqdm's own count is one behind): the loss
  postfix drawn in the same step used to show ``0/2 [00:05<-00:10, -0.20it/s]``."""
  import io

  from tqdm import tqdm

  from biomedjax.train import phases
  bar = tqdm(range(3), total=3, file=io.StringIO(), smoothing=0, mininterval=0)
  for i in bar:
    if i == 0:
      phases.restart_clock(bar, 1, 0.0)
    bar.set_postfix(loss="1.0")
    d = bar.format_dict
    assert d["n"] >= d["initial"] == 1, d
  assert "-" not in bar.fp.getvalue().replace("-\n", ""), bar.fp.getvalue()


def test_a_method_without_gradient_training_states_no_sgd_schedule():
  """results.md of a fit-stage method (the linear probe's closed-form fit, zero-shot) does not
  claim the optim.* schedule its config carries but never runs."""
  from biomedjax import run_facts
  from biomedjax.evaluation import report
  from configs import coop, linear_probe, zeroshot

  def facts(module):
    c = module.get_config("shots=4")
    return report.facts_markdown({"method": c.method.name, "dataset": "knee",
                                  "schedule": run_facts.schedule(c, 12)})
  assert ("Schedule: no gradient training (linear_probe: fitted in its fit stage on the "
          "training images' features), images 224 px") in facts(linear_probe)
  assert "Schedule: no gradient training (zeroshot: no training images used)" in facts(zeroshot)
  assert "Schedule: 100 epochs, batch 12" in facts(coop) and "sgd lr" in facts(coop)
