"""Faults a run meets in practice, injected on purpose: each must end in results equal to an
uninterrupted run's, or in one clear error with nothing already written lost.

The runs are the offline demo (CoOp, tiny random backbone, synthetic images) with 6 steps,
through ``launch.py`` in subprocesses as a user runs it; ``faulty_launch.py`` injects the
fault (SIGKILL at a chosen point, a full disk) from outside the library.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEMO = ["--config=configs/demo.py:method=coop", "--config.optim.epochs=3",
        "--config.train.ckpt_every_steps=2", "--config.train.log_every_steps=1",
        "--config.train.progress=False", "--config.eval.reliability=none"]
TOTAL = 6  # 3 epochs x 2 steps
LOCK_FILE = "run.lock"  # workdir_lock.LOCK_FILE, named here so the test runs on any version


def _env(fault: str = "") -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COORDINATOR")}
  return {**env, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1", "BIOMEDJAX_FAULT": fault}


def _cmd(workdir, *extra):
  return [sys.executable, str(HERE / "faulty_launch.py"), *DEMO, f"--workdir={workdir}", *extra]


def _run(workdir, fault: str = "", *extra, rc: int | None = 0):
  run = subprocess.run(_cmd(workdir, *extra), cwd=REPO, env=_env(fault), capture_output=True,
                       text=True, timeout=600)
  if rc is not None:
    assert run.returncode == rc, (fault, run.returncode, run.stderr[-3000:])
  return run


def _steps(workdir) -> list[int]:
  return sorted(int(p.name) for p in (pathlib.Path(workdir) / "checkpoints").glob("[0-9]*"))


def _results(workdir) -> dict:
  return json.loads((pathlib.Path(workdir) / "results.json").read_text())


def _assert_same_results(ours: dict, ref: dict) -> None:
  """Same metrics, same loss curve (every logged step), same trained state."""
  for split in ("val", "test"):
    assert ours[split]["confusion_matrix"] == ref[split]["confusion_matrix"]
    assert ours[split]["nll"] == pytest.approx(ref[split]["nll"], rel=1e-5)
  assert [s for s, _ in ours["train_loss"]] == [s for s, _ in ref["train_loss"]]
  np.testing.assert_allclose([v for _, v in ours["train_loss"]],
                             [v for _, v in ref["train_loss"]], rtol=1e-5)
  assert ours["trained_state"] == ref["trained_state"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run, and a second launch on its workdir while it runs (-> its output).

  The first run waits in its first step until the second launch has ended, so the second always
  meets a busy workdir however fast the run is (waiting changes none of its results)."""
  workdir = tmp_path_factory.mktemp("faults") / "reference"
  go_on = workdir.parent / "second-launch-done"
  first = subprocess.Popen(_cmd(workdir), cwd=REPO, env=_env(f"hold:{go_on}"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  lock = workdir / LOCK_FILE
  deadline = time.time() + 600
  while not (lock.exists() or (workdir / "config.json").exists()):
    assert first.poll() is None and time.time() < deadline, "the first run ended early"
    time.sleep(0.05)
  try:
    second = _run(workdir, rc=None)
  finally:
    go_on.touch()
  stderr = first.communicate(timeout=600)[1]
  assert first.returncode == 0, stderr[-3000:]
  return workdir, second


def test_a_second_launch_on_a_busy_workdir_is_one_line_naming_the_holder(reference):
  workdir, second = reference
  assert second.returncode == 2, second.stderr[-2000:]
  line = second.stderr.strip().splitlines()[-1]
  assert "is in use by another run (PID" in line and LOCK_FILE in line, line
  assert "training" not in second.stderr  # it refused before doing anything
  assert not (workdir / LOCK_FILE).exists()  # the first run released its lock


def test_sigkill_anywhere_then_rerun_gives_the_uninterrupted_results(reference, tmp_path):
  """SIGKILL during a step, right after a checkpoint is committed, during evaluation and between
  results.md and results.json; a full disk at a checkpoint between them. Each rerun resumes."""
  ref, _ = reference
  workdir = tmp_path / "killed"
  _run(workdir, "kill:step:2", rc=-signal.SIGKILL)
  assert _steps(workdir) == []
  _run(workdir, "kill:ckpt-done", rc=-signal.SIGKILL)  # before the loss history is written
  assert _steps(workdir) == [2]
  full = _run(workdir, "enospc:ckpt:1", rc=2)  # resumed at 2: the save of step 4 fails
  line = full.stderr.strip().splitlines()[-1]
  assert "cannot save the checkpoint of step 4 in" in line, line
  assert "No space left on device" in line and "the checkpoint of step 2 is intact" in line
  assert _steps(workdir) == [2]
  _run(workdir, "kill:eval", rc=-signal.SIGKILL)
  assert _steps(workdir) == [4, 6]
  _run(workdir, "kill:report", rc=-signal.SIGKILL)
  assert (workdir / "results.md").exists() and not (workdir / "results.json").exists()
  last = _run(workdir)
  assert "taking over the lock of a run that is gone" in last.stderr  # SIGKILL left it
  assert f"resumed from step {TOTAL} of {TOTAL}" in last.stderr
  _assert_same_results(_results(workdir), _results(ref))


def test_an_unreadable_latest_checkpoint_falls_back_to_the_one_before(reference, tmp_path):
  ref, _ = reference
  workdir = tmp_path / "corrupt"
  shutil.copytree(ref, workdir)
  (workdir / "results.json").unlink()  # unfinished: it resumes
  for f in (workdir / "checkpoints" / str(TOTAL)).rglob("*"):
    if f.is_file() and f.stat().st_size > 0 and f.name != "commit_success.txt":
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # cut short, as by a full disk
  run = _run(workdir)
  assert f"checkpoint of step {TOTAL} cannot be read" in run.stderr
  assert f"resuming from step {TOTAL - 2} instead" in run.stderr
  assert (workdir / "checkpoints.unreadable" / str(TOTAL)).is_dir()  # kept, out of the way
  _assert_same_results(_results(workdir), _results(ref))
