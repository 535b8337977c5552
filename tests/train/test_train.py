"""The training engine end to end: resume after SIGKILL, multi-device equality, bad workdirs.

Runs go through ``launch.py`` in subprocesses (as a user runs them) on the offline demo setup:
the tiny random-weight preset and synthetic images, so each run takes seconds.
"""

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
COOP = "configs/demo.py:method=coop"
FAST = ["--config.optim.epochs=10", "--config.train.ckpt_every_steps=2",
        "--config.train.log_every_steps=2", "--config.train.progress=False"]
TOTAL = 20  # 10 epochs x 2 steps (64 few-shot images, batch 32)


def _cmd(workdir, *extra, config=COOP):
  return [sys.executable, "launch.py", f"--config={config}", f"--workdir={workdir}", *FAST,
          *extra]


def _run(workdir, *extra, config=COOP, check=True):
  run = subprocess.run(_cmd(workdir, *extra, config=config), cwd=REPO, capture_output=True,
                       text=True, timeout=600)
  if check:
    assert run.returncode == 0, run.stderr[-3000:]
  return run


def _final_trainable(workdir, step=TOTAL):
  with ocp.CheckpointManager(pathlib.Path(workdir).absolute() / "checkpoints") as mngr:
    state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return state["state"]["trainable"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """An uninterrupted run (the reference for resumption)."""
  workdir = tmp_path_factory.mktemp("runs") / "uninterrupted"
  _run(workdir)
  return workdir


def test_run_writes_results_and_loss_falls(finished):
  results = json.loads((finished / "results.json").read_text())
  assert results["method"] == "coop" and results["setting"] == "few_shot"
  assert results["test"]["accuracy"] > 0.5  # 4 classes: chance is 0.25
  assert (finished / "results.md").exists() and (finished / "fewshot_selection.json").exists()
  assert list((finished / "tensorboard").iterdir())


def without_torch(tmp_path) -> dict:
  """The environment of an installation without torch (biomedjax needs none), for a process and
  the processes it starts: a ``sitecustomize`` that makes ``import torch`` fail."""
  site = tmp_path / "no_torch"
  site.mkdir()
  (site / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
  path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
  env = {**os.environ, "PYTHONPATH": path}
  env.pop("TRANSFORMERS_NO_ADVISORY_WARNINGS", None)  # this process's `import biomedjax` set it
  return env


TORCH_NOTICE = "PyTorch was not found"  # transformers' advisory on import without torch


def test_without_torch_transformers_announces_itself(tmp_path):
  """What the demo test below checks is silenced: transformers prints it without torch."""
  run = subprocess.run([sys.executable, "-c", "import transformers; transformers.AutoTokenizer"],
                       cwd=REPO, text=True,
                       capture_output=True, env=without_torch(tmp_path), timeout=300)
  assert TORCH_NOTICE in run.stderr


def test_demo_main_command_trains_both_methods_and_writes_the_report(tmp_path):
  """The README's main command, verbatim (only the workdir differs), in an installation without
  torch: the sweep says which run of how many it starts, and the libraries' notices that are not
  the user's concern (transformers' torch advisory, orbax's "Waiting for previous save") never
  reach the terminal."""
  run = subprocess.run([sys.executable, "launch.py", "--config", "configs/demo.py", "--workdir",
                        str(tmp_path / "w")], cwd=REPO, capture_output=True, text=True,
                       timeout=900, env=without_torch(tmp_path))
  assert run.returncode == 0, run.stderr[-3000:]
  tmp_path = tmp_path / "w"
  starts = [line for line in run.stderr.splitlines() if "run 1 of 2: " in line
            or "run 2 of 2: " in line]
  assert len(starts) == 2 and "method=coop" in starts[0] and "method=linear_probe" in starts[1]
  assert TORCH_NOTICE not in run.stderr and TORCH_NOTICE not in run.stdout
  assert "Waiting for previous save" not in run.stderr
  coop = json.loads((tmp_path / "method-coop" / "results.json").read_text())
  lp = json.loads((tmp_path / "method-linear_probe" / "results.json").read_text())
  losses = [loss for _, loss in coop["train_loss"]]
  assert losses[-1] < 0.5 * losses[0]
  assert coop["test"]["accuracy"] > 0.6 and lp["test"]["accuracy"] > 0.6  # chance: 0.25
  report = (tmp_path / "report" / "report.md").read_text()
  assert "coop" in report and "linear_probe" in report
  assert (tmp_path / "report" / "fewshot_curve_random_tiny.png").stat().st_size > 1000


def test_base_to_novel_refuses_class_specific_context_before_training(tmp_path):
  """The demo's CoOp has csc=True: per-class context says nothing about novel classes."""
  run = _run(tmp_path, "--config.data.setting=base2novel", check=False)
  assert run.returncode != 0 and "--config.method.csc=False" in run.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_base_to_novel_run_reports_base_novel_and_hm(tmp_path):
  _run(tmp_path, "--config.data.setting=base2novel", "--config.optim.epochs=4",
       "--config.method.csc=False")
  results = json.loads((tmp_path / "results.json").read_text())
  assert {"base", "novel", "hm"} <= set(results)
  assert results["base"]["confusion_matrix"] and len(results["base"]["classnames"]) == 2
  assert len(results["novel"]["classnames"]) == 2
  b, n = results["base"]["accuracy"], results["novel"]["accuracy"]
  assert results["hm"] == pytest.approx(0 if b + n == 0 else 2 * b * n / (b + n))


def _tree_hash(path):
  h = hashlib.sha256()
  for f in sorted(p for p in pathlib.Path(path).rglob("*") if p.is_file()):
    h.update(f.name.encode() + f.read_bytes())
  return h.hexdigest()


def test_changed_config_is_refused_and_nothing_is_touched(finished):
  before = _tree_hash(finished)
  run = _run(finished, "--config.optim.lr=0.5", check=False)
  assert run.returncode != 0
  assert "holds a run with a different config (optim.lr: 0.02 -> 0.5)" in run.stderr
  assert _tree_hash(finished) == before


def test_corrupt_checkpoint_is_a_clear_error_and_kept(finished, tmp_path):
  import shutil
  workdir = tmp_path / "corrupt"
  shutil.copytree(finished, workdir)
  (workdir / "results.json").unlink()  # a finished run is never resumed: make it unfinished
  for f in (workdir / "checkpoints").glob("*/state/**/*"):  # every checkpoint: none readable
    if f.is_file() and f.name != "commit_success.txt":
      f.write_bytes(b"garbage")  # a disk error or a partial copy of the run
  before = _tree_hash(workdir / "checkpoints")
  run = _run(workdir, check=False)
  assert run.returncode != 0
  assert f"no checkpoint in {workdir.absolute() / 'checkpoints'} can be read" in run.stderr
  assert f"cannot restore checkpoint {workdir.absolute() / 'checkpoints' / str(TOTAL)}" in run.stderr
  assert "left untouched" in run.stderr
  assert _tree_hash(workdir / "checkpoints") == before


def test_coop_on_8_devices_equals_1_device(tmp_path):
  from biomedjax.data.pipeline import make_train_iterator
  from biomedjax.methods import METHODS
  from biomedjax.train import setup, sharding, step as step_lib
  from biomedjax.train.optim import make_optimizer
  from configs import demo

  assert jax.device_count() == 8, "tests/conftest.py simulates 8 CPU devices"
  cfg = demo.get_config("method=coop")
  data = setup.build_data(cfg.data, 1, tmp_path)
  backbone, params = setup.build_backbone(cfg.model, tmp_path, setup.vocabulary_words(cfg, data))
  method = METHODS["coop"].build(backbone, setup.make_task(data.classnames, cfg.data), cfg.method)
  tx, _ = make_optimizer(cfg.optim, 2)
  finals = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = sharding.make_mesh(32, devices)
    assert mesh.shape["data"] == len(devices)
    frozen = sharding.replicate({"backbone": params, **method.prepare(params)}, mesh)
    trainable = sharding.replicate(method.init(jax.random.key(0), frozen), mesh)
    opt_state = sharding.replicate(tx.init(trainable), mesh)
    it = make_train_iterator(data.splits["train"], mesh=mesh, global_batch_size=32,
                             seed=1)
    step = step_lib.make_train_step(method, backbone, tx, mesh)
    for i in range(4):
      batch = next(it)
      assert len(batch["image"].sharding.device_set) == len(devices)
      trainable, opt_state, _, _ = step(trainable, opt_state, {}, frozen, batch,
                                        jax.random.key(1), i)
    finals.append(np.asarray(trainable["ctx"]))
  assert np.abs(finals[0] - np.asarray(method.init(jax.random.key(0), frozen)["ctx"])).max() > 1e-4
  np.testing.assert_allclose(finals[1], finals[0], rtol=1e-5, atol=1e-6)


def test_sweep_prints_the_grid_and_skips_finished_runs(tmp_path):
  done = tmp_path / "dataset-btmri_shots-1_seed-1"
  done.mkdir(parents=True)
  (done / "results.json").write_text("{}")
  run = subprocess.run([sys.executable, "launch.py", "--config=configs/coop.py:model=ckpt/x",
                        "--config.optim.lr", "0.001", f"--workdir={tmp_path}", "--sweep=print"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-2000:]
  lines = run.stdout.strip().splitlines()
  assert len(lines) == 11 * 5 * 3 - 1
  assert not any("dataset=btmri,shots=1,seed=1 " in line for line in lines)
  assert all("--config.optim.lr=0.001" in line for line in lines)
  assert all(":model=ckpt/x,dataset=" in line for line in lines)  # the command's own args kept


def test_prepared_arrayrecord_data_gives_the_same_results_as_image_files(tmp_path):
  from biomedjax.data import prepare, synthetic
  raw = tmp_path / "raw"
  split_file = synthetic.generate(raw, num_classes=4, per_class=40, size=64, seed=0)
  prepared = prepare.prepare("synth", raw, tmp_path / "prepared", split_file=split_file)
  common = ["--config.data.dataset=mine", f"--config.data.split_file={split_file}"]
  lp = "configs/demo.py:method=linear_probe"
  _run(tmp_path / "files", *common, f"--config.data.image_root={raw}", config=lp)
  _run(tmp_path / "records", *common, "--config.data.image_root=/nonexistent",
       f"--config.data.prepared={prepared}", config=lp)
  a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("files", "records"))
  assert a["test"]["num_examples"] == b["test"]["num_examples"] == 48
  assert a["test"]["confusion_matrix"] == b["test"]["confusion_matrix"]
  assert a["test"]["nll"] == pytest.approx(b["test"]["nll"], rel=1e-5)


def test_sigint_saves_exits_within_seconds_and_the_resumed_run_is_identical(finished, tmp_path):
  """Ctrl-C at random points, then the same command: same parameters, metrics and loss curve.

  A run takes seconds, so the second signal may come after the resumed process has finished;
  that process is then the resumption checked (a rerun would only say "nothing to do").
  """
  import random
  workdir = tmp_path / "interrupted"
  rng = random.Random(0)
  latest, resumed = 0, None
  for attempt in range(2):
    proc = subprocess.Popen(_cmd(workdir), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not any(int(p.name) > latest for p in (workdir / "checkpoints").glob("[0-9]*")
                  if p.name.isdigit()):
      assert proc.poll() is None and time.time() < deadline, "run ended before the signal"
      time.sleep(0.05)
    time.sleep(rng.uniform(0, 1.5) if attempt else 0.0)  # the first signal lands mid-run
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=120)[1]
    elapsed = time.time() - sent
    if proc.returncode == 0:  # finished before the signal landed: nothing left to interrupt
      resumed = stderr
      break
    assert proc.returncode == 130 and elapsed < 30, (elapsed, stderr[-3000:])
    latest = max(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    if latest == TOTAL:  # the signal landed after the last step, in the final evaluation
      assert "interrupted: stopped outside the training steps" in stderr, stderr[-3000:]
      assert "run the same command again to finish" in stderr
      break
    assert "interrupted: SIGINT: stopped at step" in stderr, stderr[-3000:]
  assert latest > 0, "no signal landed during training: nothing was resumed"
  if resumed is None:
    resumed = _run(workdir).stderr
  assert f"resumed from step {latest} of {TOTAL}" in resumed, resumed[-3000:]
  np.testing.assert_array_equal(_final_trainable(workdir)["ctx"],
                                _final_trainable(finished)["ctx"])
  ours, ref = (json.loads((d / "results.json").read_text()) for d in (workdir, finished))
  assert ours["test"] == ref["test"]
  assert [s for s, _ in ours["train_loss"]] == [s for s, _ in ref["train_loss"]]
  np.testing.assert_allclose([v for _, v in ours["train_loss"]],
                             [v for _, v in ref["train_loss"]], rtol=1e-6)


def test_finished_run_rerun_is_a_noop_that_says_so(finished):
  before = _tree_hash(finished)
  events = sorted((finished / "tensorboard").iterdir())
  run = _run(finished)
  assert "is a finished run" in run.stderr and "nothing to do" in run.stderr
  assert _tree_hash(finished) == before
  assert sorted((finished / "tensorboard").iterdir()) == events


def test_a_failed_setup_does_not_lock_the_workdir(tmp_path):
  lp = "configs/demo.py:method=linear_probe"
  bad = _run(tmp_path, f"--config.model.init={tmp_path / 'no-such-model'}", config=lp,
             check=False)
  assert bad.returncode == 2 and "no-such-model" in bad.stderr
  assert not (tmp_path / "config.json").exists()
  _run(tmp_path, config=lp)  # the corrected command runs in the same workdir
  assert (tmp_path / "results.json").exists()
