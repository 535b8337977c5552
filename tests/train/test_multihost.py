"""Multi-process runs on one machine: two processes train, evaluate and report like one.

The two processes talk over localhost (JAX's coordinator, gloo collectives on CPU), exactly as
README "Several machines" starts them, with one CPU device each; the one-process reference gets
two simulated devices, so both see the same 2-device global mesh and may differ only in where
the devices live. The runs are the offline demo's sweep (CoOp, then the linear probe) with a
short schedule, through ``launch.py`` in subprocesses.

The two-process sweep is interrupted on the way, as multi-host runs are in practice:
  1. both processes are killed with SIGKILL once the first CoOp checkpoint is written;
  2. the same commands resume; once a later checkpoint is written, process 1 alone is killed,
     and process 0 must then stop by itself, with a clear error, within a bounded time;
  3. the same commands resume again and finish the sweep.
Its results must equal the uninterrupted one-process sweep's: a resumption that replayed or
skipped a batch, or a process that read the wrong slice, would change the CoOp context far more
than the 1e-6 allowed for the different summation order of a cross-process reduction.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from biomedjax.train import distributed

pytestmark = pytest.mark.multiprocess  # two JAX processes per test: run apart from xdist

REPO = pathlib.Path(__file__).resolve().parents[2]
SHORT = ["--config.optim.epochs=6", "--config.train.ckpt_every_steps=2",
         "--config.train.log_every_steps=2", "--config.train.progress=False"]
DEMO = ["--config=configs/demo.py", *SHORT]
TOTAL = 12  # 6 epochs x 2 steps (64 few-shot images, batch 32)
TIMEOUT_S = 10  # heartbeat timeout of the test runs
STOP_BOUND_S = 120  # a survivor must be gone this long after its peer's death (10 s + load)


def _env(devices: int = 1, **extra) -> dict:
  """The environment of a launched process: CPU, ``devices`` devices, no inherited JAX_* run."""
  env = {k: v for k, v in os.environ.items()
         if k not in (distributed.ENV_ADDRESS, distributed.ENV_COUNT, distributed.ENV_ID)}
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]  # conftest's 8
  if devices > 1:
    flags.append(f"--xla_force_host_platform_device_count={devices}")
  env.update(XLA_FLAGS=" ".join(flags), JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             **{distributed.ENV_TIMEOUT: str(TIMEOUT_S)}, **extra)
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Pair:
  """The two processes of one two-process command (each in its own process group)."""

  def __init__(self, workdir, args, log_prefix: pathlib.Path):
    port = _free_port()
    self.logs = [log_prefix.with_name(f"{log_prefix.name}-p{i}.log") for i in range(2)]
    self.procs = []
    for i, log in enumerate(self.logs):
      env = _env(**{distributed.ENV_ADDRESS: f"127.0.0.1:{port}", distributed.ENV_COUNT: "2",
                    distributed.ENV_ID: str(i)})
      with open(log, "w") as f:
        self.procs.append(subprocess.Popen(
            [sys.executable, "launch.py", *args, f"--workdir={workdir}"], cwd=REPO, env=env,
            stdout=f, stderr=subprocess.STDOUT, start_new_session=True))

  def log(self, i: int) -> str:
    return self.logs[i].read_text()

  def wait_for_checkpoint(self, run: pathlib.Path, step: int, timeout_s: float = 900) -> None:
    """Until ``run`` has a checkpoint of ``step`` or later (a later save may already have
    deleted that one: the runs keep two)."""
    deadline = time.time() + timeout_s
    while not any(s >= step for s in _checkpoints(run)):
      assert all(p.poll() is None for p in self.procs), (
          f"a process ended before {run} had checkpoint {step}:\n{self.log(0)[-3000:]}\n"
          f"{self.log(1)[-3000:]}")
      assert time.time() < deadline, f"{run} had no checkpoint {step} in {timeout_s} s"
      time.sleep(0.05)

  def kill(self, *which: int) -> None:
    for i in which:
      os.killpg(self.procs[i].pid, signal.SIGKILL)  # the launcher and the run it started
      self.procs[i].wait()

  def finish(self, timeout_s: float = 1200) -> None:
    for i, p in enumerate(self.procs):
      rc = p.wait(timeout_s)
      assert rc == 0, f"process {i} failed ({rc}):\n{self.log(i)[-4000:]}"


def _checkpoints(workdir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit())


def _final_trainable(workdir, step=TOTAL):
  """The saved trainable as NumPy (the saving run's devices need not exist here)."""
  path = pathlib.Path(workdir).absolute() / "checkpoints" / str(step) / "state"
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(path).item_metadata.tree
  args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))["trainable"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
  """The demo sweep, uninterrupted, in one process with two devices."""
  workdir = tmp_path_factory.mktemp("one_process")
  run = subprocess.run([sys.executable, "launch.py", *DEMO, f"--workdir={workdir}"], cwd=REPO,
                       env=_env(devices=2), capture_output=True, text=True, timeout=1200)
  assert run.returncode == 0, run.stderr[-4000:]
  return workdir


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
  """The demo sweep in two processes, killed twice on the way (module docstring); -> facts."""
  root = tmp_path_factory.mktemp("two_processes")
  workdir, coop = root / "run", root / "run" / "method-coop"
  facts = {"workdir": workdir}
  first = Pair(workdir, DEMO, root / "1-killed")
  first.wait_for_checkpoint(coop, 2)
  first.kill(0, 1)
  facts["after_first_kill"] = _checkpoints(coop)

  second = Pair(workdir, DEMO, root / "2-one-dies")
  second.wait_for_checkpoint(coop, max(facts["after_first_kill"]) + 2)
  second.kill(1)
  killed_at = time.time()
  try:
    facts["survivor_rc"] = second.procs[0].wait(STOP_BOUND_S)
  except subprocess.TimeoutExpired:
    second.kill(0)
    facts["survivor_rc"] = None
  facts["survivor_s"] = time.time() - killed_at
  facts["survivor_log"] = second.log(0)
  facts["after_second_kill"] = _checkpoints(coop)

  third = Pair(workdir, DEMO, root / "3-resumed")
  third.finish()
  facts["resumed_logs"] = [third.log(0), third.log(1)]
  return facts


def test_resolve_takes_flags_over_variables_and_detects_clusters():
  env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
         "JAX_PROCESS_ID": "3"}
  assert distributed.resolve(environ={}) is None
  assert distributed.resolve(environ=env) == distributed.Settings("10.0.0.1:1234", 4, 3, 60)
  assert distributed.resolve("h:1", 2, 1, 7, environ=env) == distributed.Settings("h:1", 2, 1, 7)
  assert distributed.resolve(environ={**env, "JAX_NUM_PROCESSES": "1",
                                      "JAX_PROCESS_ID": "0"}) is None
  # A detected cluster supplies what is missing: JAX's own detection is kept.
  slurm = distributed.resolve(environ={"SLURM_NTASKS": "2", "JAX_PROCESS_ID": "1"})
  assert slurm == distributed.Settings(None, None, 1, 60, auto_detect=True)
  tpu = distributed.resolve(environ={"TPU_WORKER_HOSTNAMES": "a,b", "TPU_WORKER_ID": "1"})
  assert tpu.auto_detect and distributed.process_id_before_start(tpu, {"TPU_WORKER_ID": "1"}) == 1
  assert distributed.resolve(environ={"TPU_WORKER_HOSTNAMES": "a", "SLURM_NTASKS": "1"}) is None


@pytest.mark.parametrize("kwargs, env, message", [
    ({}, {"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
     "got JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=0 but no --coordinator_address (or "
     "JAX_COORDINATOR_ADDRESS)"),
    ({"coordinator_address": "h:1"}, {},
     "no --num_processes (or JAX_NUM_PROCESSES) and --process_id (or JAX_PROCESS_ID)"),
    ({"process_id": 2}, {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"},
     "--process_id=2 must be below JAX_NUM_PROCESSES=2 (ids run from 0 to 1)"),
    ({}, {"JAX_COORDINATOR_ADDRESS": "10.0.0.1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"},
     "JAX_COORDINATOR_ADDRESS='10.0.0.1' must be HOST:PORT of process 0"),
    ({"num_processes": "two"}, {}, "--num_processes='two' must be an integer >= 1"),
    ({}, {"BIOMEDJAX_DISTRIBUTED_TIMEOUT": "0"},
     "BIOMEDJAX_DISTRIBUTED_TIMEOUT='0' must be an integer >= 1"),
])
def test_bad_settings_are_one_error_naming_them(kwargs, env, message):
  with pytest.raises(distributed.DistributedSettingsError) as e:
    distributed.resolve(**kwargs, environ=env)
  assert message in str(e.value)


def test_launcher_refuses_bad_settings_before_writing_anything(tmp_path):
  workdir = tmp_path / "run"
  run = subprocess.run([sys.executable, "launch.py", *DEMO, f"--workdir={workdir}",
                        "--num_processes=2", "--process_id=0"], cwd=REPO, timeout=300,
                       env=_env(), capture_output=True, text=True)
  assert run.returncode != 0
  assert "error: a multi-process run needs" in run.stderr  # one line (launch --debug: traceback)
  assert "but no --coordinator_address (or JAX_COORDINATOR_ADDRESS)" in run.stderr
  assert not workdir.exists()


def test_a_dead_process_stops_the_other_with_a_clear_error(two_processes):
  f = two_processes
  assert f["survivor_rc"] is not None, f"process 0 still ran {STOP_BOUND_S} s after process 1 died"
  assert f["survivor_rc"] != 0
  log = f["survivor_log"]
  # Ours (a failed collective, or the watchdog of a phase that waited too long), or JAX's (the
  # coordinator missed process 1's heartbeats): whichever notices first under the load.
  assert ("process 0 of 2 stopped" in log and "If another process failed or died first" in log
          or "no progress for" in log and "another process is stuck, far behind or dead" in log
          or "another task died" in log), log[-3000:]
  assert TOTAL not in f["after_second_kill"]


def test_killed_runs_resume_and_two_processes_train_like_one(one_process, two_processes):
  coop = two_processes["workdir"] / "method-coop"
  assert TOTAL not in two_processes["after_first_kill"]
  assert all("resumed from step" in log for log in two_processes["resumed_logs"])
  ours, ref = (np.asarray(_final_trainable(w / "method-coop")["ctx"])
               for w in (two_processes["workdir"], one_process))
  losses = [loss for _, loss in json.loads(
      (one_process / "method-coop" / "results.json").read_text())["train_loss"]]
  assert losses[-1] < 0.9 * losses[0]  # it trained: equal parameters are not the initial ones
  np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
  # One set of checkpoint files, saved by both processes (each writes its data-iterator state).
  data_iter = coop / "checkpoints" / str(TOTAL) / "data_iter"
  iterator = sorted(p.name for p in data_iter.glob("*.json"))
  assert iterator == ["process_0-of-2.json", "process_1-of-2.json"]


@pytest.mark.parametrize("method", ["coop", "linear_probe"])
def test_two_processes_evaluate_and_report_like_one(one_process, two_processes, method):
  ours, ref = (json.loads((w / f"method-{method}" / "results.json").read_text())
               for w in (two_processes["workdir"], one_process))
  for split in ("val", "test"):
    a, b = ours[split], ref[split]
    assert a["num_examples"] == b["num_examples"] > 0  # every example once
    assert a["confusion_matrix"] == b["confusion_matrix"]
    for key in ("accuracy", "macro_f1", "nll", "ece"):
      assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (split, key)
  if method == "coop":
    np.testing.assert_allclose([loss for _, loss in ours["train_loss"]],
                               [loss for _, loss in ref["train_loss"]][-len(ours["train_loss"]):],
                               rtol=1e-5)
  run = two_processes["workdir"] / f"method-{method}"
  assert (run / "results.md").exists()
  if method == "linear_probe":  # started once (CoOp was started three times)
    assert len(list((run / "tensorboard").iterdir())) == 1  # process 0's event file only


def test_the_report_is_written_once_with_the_one_process_numbers(one_process, two_processes):
  ours, ref = ((w / "report" / "summary.csv").read_text()
               for w in (two_processes["workdir"], one_process))
  assert ours == ref and "linear_probe" in ours and "coop" in ours
  p0, p1 = two_processes["resumed_logs"]
  assert p0.count("### K = 16") == 1 and "### K = 16" not in p1  # process 0 wrote it
