"""``launch.py`` with one fault injected, for the fault-injection tests (``BIOMEDJAX_FAULT``).

  kill:step:N      SIGKILL itself as the N-th train step of this process is dispatched
  kill:ckpt-write  SIGKILL while the first checkpoint is being written (orbax has begun)
  kill:ckpt-done   SIGKILL right after the first checkpoint is committed, before anything else
  kill:eval        SIGKILL in the first evaluation of a split
  kill:report      SIGKILL between results.md and results.json
  sleep:S          sleep S seconds in every train step (a slow process)
  hold:PATH        wait in the first train step until PATH exists (a run that is surely busy)
  enospc:ckpt:N    the N-th checkpoint save fails with "No space left on device" (a full disk)

The faults wrap library functions from outside (nothing in the library knows of them), so the
same wrapper runs against any version of the code.
"""

import errno
import os
import pathlib
import signal
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.argv[0] = str(REPO / "launch.py")

import orbax.checkpoint as ocp  # noqa: E402

import launch  # noqa: E402
from biomedjax.evaluation import report as report_lib  # noqa: E402
from biomedjax.train import checkpoint, evaluate, step as step_lib  # noqa: E402

FAULT = os.environ.get("BIOMEDJAX_FAULT", "")
kind, _, arg = FAULT.partition(":")


def die():
  sys.stdout.flush()
  sys.stderr.flush()
  os.kill(os.getpid(), signal.SIGKILL)


def wrap(owner, name, before=None, after=None):
  original = getattr(owner, name)

  def wrapper(*a, **k):
    if before:
      before(*a, **k)
    out = original(*a, **k)
    if after:
      after(*a, **k)
    return out
  setattr(owner, name, wrapper)


if kind in ("kill", "sleep", "hold") and (arg.startswith("step") or kind != "kill"):
  make = step_lib.make_train_step
  count = [0]

  def make_train_step(*a, **k):
    fn = make(*a, **k)

    def step(*args):
      count[0] += 1
      if kind == "kill" and count[0] == int(arg.partition(":")[2]):
        die()
      if kind == "sleep":
        time.sleep(float(arg))
      while kind == "hold" and not os.path.exists(arg):
        time.sleep(0.05)
      return fn(*args)
    return step
  step_lib.make_train_step = make_train_step
elif FAULT == "kill:ckpt-write":
  wrap(ocp.CheckpointManager, "wait_until_finished", before=lambda *a, **k: die())
elif FAULT == "kill:ckpt-done":
  wrap(checkpoint.Checkpointer, "save", after=lambda *a, **k: die())
elif FAULT == "kill:eval":
  wrap(evaluate, "report", before=lambda *a, **k: die())
elif FAULT == "kill:report":
  wrap(report_lib, "_atomic_write",
       before=lambda path, *a, **k: die() if pathlib.Path(path).name == "results.json" else None)
elif kind == "enospc":
  saves = [0]

  def full_disk(*a, **k):
    saves[0] += 1
    if saves[0] == int(arg.partition(":")[2]):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "checkpoints")
  wrap(ocp.CheckpointManager, "save", before=full_disk)
elif FAULT:
  raise SystemExit(f"BIOMEDJAX_FAULT={FAULT!r}: unknown fault")

if __name__ == "__main__":
  launch.cli()
