"""Packed sweeps (biomedjax/train/packed.py): a pack equals its points' separate runs.

One pack of three BiomedCoOp points on the tiny random preset and synthetic images (p1 differs
from p0 in lambda_SCCM, lambda_KDSP, tau and the learning rate at once) is interrupted (SIGINT)
mid-run and resumed; p1 must then equal its separate ``train_and_evaluate`` run (the engine's own
single-run path; one separate run bounds the module's test time, and p1 exercises
every traced field with a value other than the reference point's): loss curves, eval logits,
metrics, temperature and trained parameters to 1e-5 relative, and the same files in each workdir.
The same runs serve every test."""

import json
import logging
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file

from biomedjax.evaluation import report
from biomedjax.train import lifecycle, loop, packed
from tests import interrupt
from tests.methods.test_biomedcoop import synthetic_prompts

REPO = pathlib.Path(__file__).resolve().parents[2]
CLASSES = [f"class_{c:02d}" for c in range(4)]
# (lambda_sccm, lambda_kdsp, tau, lr): every packable kind of difference at once.
POINTS = {"p0": (0.5, 0.25, 1.5, 0.02), "p1": (2.0, 4.0, 0.75, 0.01), "p2": (1.0, 0.25, 1.5, 0.02)}
TOTAL = 6  # 8 few-shot images at batch 4: 2 steps x 3 epochs
STOP_AFTER = 3
SEPARATE = ("p1",)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("packed")
  (root / "prompts.json").write_text(json.dumps(synthetic_prompts(CLASSES, n=6)))
  return root


def _config(root, sccm=0.5, kdsp=0.25, tau=1.5, lr=0.02, seed=1, **method):
  from configs import biomedcoop as cfg_lib
  c = cfg_lib.get_config(f"dataset=synthetic,shots=2,seed={seed},prompts={root / 'prompts.json'}")
  c.model.preset, c.model.init = "tiny", ""
  c.data.synthetic.per_class = 8
  c.data.test_batch_size = 32
  c.method.n_prompts = 6
  c.method.lambda_sccm, c.method.lambda_kdsp, c.method.tau = sccm, kdsp, tau
  for k, v in method.items():
    c.method[k] = v
  c.optim.lr, c.optim.epochs = lr, 3
  c.eval.temperature, c.eval.reliability = "fit", "none"
  c.train.progress, c.train.log_every_steps, c.train.ckpt_min_seconds = False, 2, 0.0
  c.variant = f"lambdas={sccm}/{kdsp}"
  return c


def _points(root, folder):
  return [packed.Point(_config(root, *v), root / folder / k) for k, v in POINTS.items()]


@pytest.fixture(scope="module")
def pack(root):
  """The pack, stopped by SIGINT after STOP_AFTER steps, then run again to the end."""
  points = _points(root, "sweep")
  directory = packed.pack_dir(root / "sweep", points)
  with interrupt.sigint_at_step(packed.PackProgram, STOP_AFTER):
    with pytest.raises(lifecycle.Interrupted, match=f"step {STOP_AFTER} of {TOTAL}"):
      packed.run_sweep(points, root / "sweep")
  interrupted = {"steps": sorted(int(p.name) for p in (directory / "checkpoints").iterdir()),
                 "results": [(p.workdir / "results.json").exists() for p in points]}
  packed.run_sweep(points, root / "sweep")
  return points, directory, interrupted


@pytest.fixture(scope="module")
def separate(root):
  """Point p1 as its own run (every packed field differs from p0's)."""
  for k in SEPARATE:
    loop.train_and_evaluate(_config(root, *POINTS[k]), root / "single" / k)
  return root / "single"


def _close(a, b, what):
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=what)


def test_pack_resumed_after_sigint(pack):
  points, directory, interrupted = pack
  assert interrupted["steps"][-1] == STOP_AFTER and not any(interrupted["results"])
  assert json.loads((directory / packed.PACK_FILE).read_text())["points"] == [
      str(p.workdir) for p in points]
  assert max(int(p.name) for p in (directory / "checkpoints").iterdir()) == TOTAL


def test_points_equal_separate_runs(pack, separate):
  points, directory, _ = pack
  for p in points[1:2]:
    one = separate / p.workdir.name
    got, want = (json.loads((d / "results.json").read_text()) for d in (p.workdir, one))
    assert got["pack"] == {"dir": str(directory), "points": 3,
                           "index": list(POINTS).index(p.workdir.name)}
    assert [s for s, _ in got["train_loss"]] == [s for s, _ in want["train_loss"]] == [2, 4, 6]
    _close([v for _, v in got["train_loss"]], [v for _, v in want["train_loss"]], "loss")
    for split in ("val", "test"):
      for key in ("accuracy", "nll", "ece"):
        _close(got[split][key], want[split][key], f"{p.workdir.name} {split} {key}")
      _close(got[split]["temperature_scaled"]["nll"], want[split]["temperature_scaled"]["nll"],
             "T-scaled nll")
      a, b = (np.load(d / "predictions" / f"{split}.npz") for d in (p.workdir, one))
      _close(a["logits"], b["logits"], f"{p.workdir.name} {split} logits")
      np.testing.assert_array_equal(a["labels"], b["labels"])
    _close(got["temperature"]["value"], want["temperature"]["value"], "temperature")
    a, b = (load_file(d / "trained_state.safetensors") for d in (p.workdir, one))
    assert a.keys() == b.keys()
    for k in a:
      _close(a[k], b[k], f"{p.workdir.name} trained {k}")
  # the points really differ: not one run written three times
  ctx = [load_file(p.workdir / "trained_state.safetensors")["ctx"] for p in points]
  assert not np.allclose(ctx[0], ctx[1]) and not np.allclose(ctx[0], ctx[2])


def test_point_workdirs_hold_what_a_single_run_writes(pack, separate, root):
  points, _, _ = pack
  for p in points[1:2]:
    single, mine = (_files(d) for d in (separate / p.workdir.name, p.workdir))
    own = {f for f in single if f.parts[0] in ("checkpoints", "random_tokenizer")}
    assert mine == single - own, (mine ^ (single - own))  # checkpoints: the pack's own dir
    assert json.loads((p.workdir / "config.json").read_text()) == json.loads(
        (separate / p.workdir.name / "config.json").read_text())
  text = report.make_report([root / "sweep"], root / "report")
  assert "biomedcoop [lambdas=2.0/4.0]" in text and "biomedcoop [lambdas=0.5/0.25]" in text


def _files(workdir):
  """The files under ``workdir``, TensorBoard event files by folder (their names are times)."""
  return {f.parent / "events" if f.name.startswith("events.out") else f
          for f in (x.relative_to(workdir) for x in workdir.rglob("*"))}


def test_finished_points_are_skipped(pack, caplog):
  points, _, _ = pack
  stamps = [(p.workdir / "results.json").stat().st_mtime_ns for p in points]
  with caplog.at_level(logging.INFO, "biomedjax"):
    packed.run_sweep(points, pack[1].parent.parent)
  assert [(p.workdir / "results.json").stat().st_mtime_ns for p in points] == stamps
  assert caplog.text.count("done, skipping") == 3


def test_structural_difference_is_refused_before_anything_is_locked(root):
  points = [packed.Point(_config(root, text_dropout=d), root / "refused" / str(d))
            for d in (True, False)]
  with pytest.raises(packed.PackError, match=r"method.text_dropout \(True, False\) changes the "
                                             r"program's structure and cannot be packed; use "
                                             r"--sweep=run"):
    packed.run_pack(points, root / "refused" / "pack")
  assert not any((p.workdir / "config.json").exists() for p in points)
  assert not (root / "refused" / "pack").exists()


def test_points_differing_in_seed_form_separate_packs(root, caplog):
  points = [packed.Point(_config(root, sccm=s, seed=seed), root / f"{s}-{seed}")
            for seed in (1, 2) for s in (0.5, 1.0)]
  with caplog.at_level(logging.INFO, "biomedjax"):
    groups = packed.group(points)
  assert [[p.workdir.name for p in g] for g in groups] == [["0.5-1", "1.0-1"], ["0.5-2", "1.0-2"]]
  assert "differ in seed (1, 2)" in caplog.text and "the seeds are not packed" in caplog.text


def test_launcher_grid_commands(tmp_path):
  """--grid multiplies the config file's points; each command gets its values and its label."""
  run = subprocess.run(
      [sys.executable, "launch.py", "--config=configs/biomedcoop.py:dataset=btmri,seed=1,shots=16",
       "--grid=method.lambda_sccm=0.5+1", "--grid=optim.lr=0.01+0.02", "--sweep=print",
       f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  lines = run.stdout.splitlines()
  assert len(lines) == 4
  assert ("--config.method.lambda_sccm=1 --config.optim.lr=0.01 "
          "--config.variant=method.lambda_sccm=1,optim.lr=0.01 "
          f"--workdir={tmp_path}/dataset-btmri_shots-16_seed-1_method.lambda_sccm-1_optim.lr-0.01"
          ) in lines[2]
