"""A run's life in its workdir: when to checkpoint, how to stop on a signal, what survives resumes.

* **When to checkpoint** (``CheckpointPolicy``): at the end of every epoch, every
  ``train.ckpt_every_minutes`` of wall time, every ``train.ckpt_every_steps`` if set (> 0), at
  the last step and when a stop was requested, whichever comes first. Benchmark runs are short
  (CoOp 16-shot BTMRI: 200 steps), so a fixed 500-step interval would never save at all. An
  epoch of a few-shot run can be 2 steps, though, and a save costs seconds: the end-of-epoch
  save is skipped while the last one is younger than ``train.ckpt_min_seconds`` (a crash then
  loses at most that much; a signal still saves at once).
* **Stopping** (``StopRequest``): SIGINT/SIGTERM set a flag instead of raising in the middle of
  a step; the loop finishes the step, saves a checkpoint and raises ``Interrupted``. The
  launcher then exits at once, without waiting for the input pipeline's prefetch threads. A
  second signal raises ``KeyboardInterrupt`` immediately (nothing newer than the last
  checkpoint is saved then). The training loops use ``watchdog.Guard``, which adds a thread
  that acts on signals the blocked main thread cannot handle, and on hangs; in a multi-process
  run the stop is agreed by all processes (``agreement``).
* **History** (``History``): the (step, loss) log of ``results.json`` is saved beside every
  checkpoint and reloaded on resume, cut at the restored step, so a resumed run reports the
  whole curve. TensorBoard gets ``purge_step`` = the restored step, so a resumed stream has no
  duplicated or stale points.
* **Finished runs**: a workdir whose ``results.json`` exists holds a finished run; rerunning it
  is a no-op that says so (``finished_results``).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import signal
import threading
import time

log = logging.getLogger("biomedjax")

HISTORY_FILE = "train_history.json"
RESULTS_FILE = "results.json"


class Interrupted(KeyboardInterrupt):
  """Training stopped on a signal after saving a checkpoint; the message says where."""


class CheckpointPolicy:
  """Decides after each step whether to save (see the module docstring)."""

  def __init__(self, steps_per_epoch: int, total: int, every_steps: int = 0,
               every_minutes: float = 10.0, min_seconds: float = 30.0, clock=time.monotonic):
    self.per_epoch, self.total = steps_per_epoch, total
    self.every_steps, self.every_s, self.min_s = every_steps, every_minutes * 60, min_seconds
    self.clock = clock
    self.last, self.saved = clock(), False  # the first epoch end always saves

  def due(self, done: int, stop_requested: bool = False) -> bool:
    now = self.clock()
    epoch_end = done % self.per_epoch == 0 and (not self.saved or now - self.last >= self.min_s)
    due = (done == self.total or stop_requested or epoch_end
           or (self.every_steps > 0 and done % self.every_steps == 0)
           or (self.every_s > 0 and now - self.last >= self.every_s))
    if due:
      self.last, self.saved = now, True
    return due


class StopRequest:
  """Context manager: SIGINT/SIGTERM request a stop (``bool(self)``) instead of raising.

  Only installed in the main thread (signal handlers can only be set there); elsewhere it is
  inert. The previous handlers are restored on exit.
  """

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signum = None
    self._previous = {}

  def __bool__(self):
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else ""

  def _handle(self, signum, frame):
    if self.signum is not None:  # a second signal: stop now
      raise KeyboardInterrupt
    self.signum = signum
    log.warning("%s received: saving a checkpoint after this step, then exiting (send it again "
                "to stop at once)", signal.Signals(signum).name)

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for s in self.SIGNALS:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    return False


class History:
  """The (step, loss) log, saved beside checkpoints and restored (cut at the step) on resume."""

  def __init__(self, workdir: pathlib.Path):
    self.path = pathlib.Path(workdir) / HISTORY_FILE
    self.entries: list[tuple[int, float]] = []

  def restore(self, step: int) -> None:
    if self.path.is_file():
      self.entries = [(int(s), float(v)) for s, v in json.loads(self.path.read_text())
                      if int(s) <= step]

  def append(self, step: int, loss: float) -> None:
    self.entries.append((step, loss))

  def save(self) -> None:
    tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(self.entries))
    os.replace(tmp, self.path)


def latest_step(workdir: pathlib.Path) -> int | None:
  """The newest finalised checkpoint step in ``workdir/checkpoints`` (orbax names them by step;
  temporary ones carry a suffix), or None."""
  folder = pathlib.Path(workdir) / "checkpoints"
  steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
  return max(steps, default=None)


def finished_results(workdir: pathlib.Path) -> dict | None:
  """The results of a finished run in ``workdir``, or None; logs that nothing will be redone."""
  path = pathlib.Path(workdir) / RESULTS_FILE
  if not path.is_file():
    return None
  try:
    results = json.loads(path.read_text())
  except json.JSONDecodeError:
    return None  # a damaged results file: the run is redone (its checkpoints make that quick)
  log.warning("%s is a finished run (%s exists): nothing to do. Delete %s to evaluate again, "
              "or use another --workdir", workdir, path, path.name)
  return results
