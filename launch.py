"""Runs one experiment, or a config file's sweep.

  python launch.py --config configs/coop.py:dataset=btmri,shots=16,seed=1 --workdir runs/x
  python launch.py --config configs/coop.py --config.optim.lr=0.001 --workdir runs/coop --sweep=print
  python launch.py --config configs/demo.py --workdir /tmp/demo

An existing --workdir resumes its run. Several processes (hosts, GPU nodes, or processes on one
machine) run the same command, each with its own process id (README, "Several machines"):

  JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 python launch.py ...

or ``--coordinator_address/--num_processes/--process_id``; TPU VMs, SLURM and Open MPI need none
of them (``biomedjax.train.distributed``).
"""

import logging
import pathlib
import shlex
import subprocess
import sys

from absl import app, flags
from ml_collections import config_flags

import biomedjax  # noqa: F401  (sets its XLA CPU flag before JAX starts)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "configs/<method>.py[:args]", lock_config=True)
flags.DEFINE_string("workdir", None, "run directory (created; resumed if it exists)")
flags.DEFINE_enum("sweep", "", ["", "print", "run"],
                  "print: one command per point of the config file's sweep; run: run them")
flags.DEFINE_string("coordinator_address", None,
                    "HOST:PORT of process 0 of a multi-process run (else $JAX_COORDINATOR_ADDRESS)")
flags.DEFINE_integer("num_processes", None, "processes of the run (else $JAX_NUM_PROCESSES)")
flags.DEFINE_integer("process_id", None, "this process, 0..num_processes-1 (else $JAX_PROCESS_ID)")
flags.DEFINE_integer("distributed_timeout", None,
                     "seconds after which a silent process counts as dead and the others stop "
                     "(else $BIOMEDJAX_DISTRIBUTED_TIMEOUT, default 60)")
flags.mark_flags_as_required(["config", "workdir"])
DISTRIBUTED_FLAGS = ("coordinator_address", "num_processes", "process_id", "distributed_timeout")


def _merge_args(base: str, point: str) -> str:
  """The command's config-string arguments with a sweep point's on top (point wins)."""
  items = dict(i.partition("=")[::2] for i in base.split(",") if i)
  items.update(i.partition("=")[::2] for i in point.split(",") if i)
  return ",".join(f"{k}={v}" if v else k for k, v in items.items())


def _config_overrides(args: list[str]) -> list[str]:
  """This command's ``--config.x=y`` / ``--config.x y`` flags (absl strips them from argv)."""
  out = []
  for i, a in enumerate(args):
    if a.startswith("--config."):
      out.append(a if "=" in a or i + 1 == len(args) else f"{a}={args[i + 1]}")
  return out


def _sweep_commands() -> list[tuple[list[str], pathlib.Path]]:
  """One launch command per sweep point, with this command's --config.* overrides kept."""
  import importlib.util
  file, _, base_arg = config_flags.get_config_filename(FLAGS["config"]).partition(":")
  spec = importlib.util.spec_from_file_location("sweep_config", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  points = []
  module.sweep(lambda **kw: points.append(kw["arg"]), base_arg or None)
  overrides = _config_overrides(sys.argv[1:])
  out = []
  for point in points:
    workdir = pathlib.Path(FLAGS.workdir) / point.replace(",", "_").replace("=", "-")
    cmd = [sys.executable, __file__, f"--config={file}:{_merge_args(base_arg, point)}",
           *overrides, f"--workdir={workdir}", *_distributed_flags()]
    out.append((cmd, workdir))
  return out


def _distributed_flags() -> list[str]:
  """This command's multi-process flags, for the sweep's runs (each one a multi-process run)."""
  return [f"--{n}={FLAGS[n].value}" for n in DISTRIBUTED_FLAGS if FLAGS[n].value is not None]


def run_sweep(mode: str, process_id: int) -> None:
  """Runs (or prints) the sweep's points one after another; the report is process 0's.

  Every process of a multi-process sweep runs this loop, and each point's run is itself a
  multi-process run: the processes skip the same finished points, since a point's results.json
  only appears at the end of its run.
  """
  from biomedjax import report
  commands = _sweep_commands()
  for cmd, workdir in commands:
    if (workdir / "results.json").exists():
      logging.info("done, skipping: %s", workdir)
      continue
    if mode == "print":
      print(shlex.join(cmd))
    else:
      logging.info("running %s", shlex.join(cmd))
      subprocess.run(cmd, check=True)
  if mode == "run" and process_id == 0:
    print(report.make_report([FLAGS.workdir], pathlib.Path(FLAGS.workdir) / "report"))


def main(argv):
  logging.getLogger("biomedjax").setLevel(logging.INFO)
  for noisy in ("orbax", "absl", "jax._src.xla_bridge", "grain"):  # keep the console readable
    logging.getLogger(noisy).setLevel(logging.WARNING)
  from biomedjax.train import distributed
  settings = distributed.resolve(*(FLAGS[n].value for n in DISTRIBUTED_FLAGS))
  mode = FLAGS.sweep or ("run" if FLAGS.config.run_sweep else "")
  if mode:  # each point's run starts its own jax.distributed
    return run_sweep(mode, distributed.process_id_before_start(settings))
  distributed.initialize(settings)
  from biomedjax.train.loop import train_and_evaluate
  with distributed.stop_all_on_error(FLAGS.workdir):
    train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
