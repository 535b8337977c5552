"""Job arrays: point I of a sweep as one task (``launch.py --sweep=array --index=I``).

A cluster runs the sweep as an array of ``--sweep=count`` tasks, each calling the same command
with its own index (``--index``, else the environment variable ``--index_var`` names,
``SLURM_ARRAY_TASK_ID`` by default). Task I runs point I in the point's own workdir (the one
``--sweep=run`` gives it): a finished point (its ``results.json`` exists) is skipped, so a rerun
of the array redoes only what did not finish, and an interrupted point resumes from its
checkpoint. Two tasks never share a workdir: the points' workdirs are distinct (checked), and a
task holds an exclusive lock on its point while it runs, so a duplicate task for the same index
stops at once instead of writing into the same folder.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import logging
import os
import pathlib
import shlex
import subprocess
from typing import Callable

log = logging.getLogger("biomedjax")
DEFAULT_INDEX_VAR = "SLURM_ARRAY_TASK_ID"
LOCKS_DIR = ".array_locks"


@dataclasses.dataclass
class SweepPoint:
  """One point of a sweep: its name, workdir, the command that runs it and (resolved on
  demand, it costs a config build) its config."""
  name: str
  workdir: pathlib.Path
  command: list[str]
  resolve: Callable = dataclasses.field(repr=False, default=None)

  @functools.cached_property
  def config(self):
    return self.resolve(self.command)

  @property
  def finished(self) -> bool:
    return (self.workdir / "results.json").exists()


def from_sweep(points) -> list[SweepPoint]:
  """The sweep package's points (``points.enumerate_points``: name, config, workdir, command)
  as the points plan and array use."""
  return [SweepPoint(pathlib.Path(p.workdir).name, pathlib.Path(p.workdir), list(p.command),
                     lambda _, config=p.config: config) for p in points]


def _points(commands, resolve) -> list[SweepPoint]:
  """``(command, workdir)`` pairs with a ``resolve(command) -> config``: points built by hand
  (the tests' simulated sweeps)."""
  return [SweepPoint(pathlib.Path(w).name, pathlib.Path(w), list(c), resolve)
          for c, w in commands]


def check_distinct(points: list[SweepPoint]) -> None:
  seen = {}
  for i, p in enumerate(points):
    key = str(p.workdir.resolve())
    if key in seen:
      raise ValueError(f"sweep points {seen[key]} and {i} share the workdir {p.workdir}; give "
                       "the points distinct config arguments")
    seen[key] = i


def index_from(flag_value: int | None, var: str = DEFAULT_INDEX_VAR) -> int:
  """``--index``, else the integer in ``$var``; neither is an error naming both."""
  if flag_value is not None:
    return flag_value
  text = os.environ.get(var)
  if text is None:
    raise ValueError(f"--sweep=array needs --index=I or the environment variable {var} "
                     "(--index_var names another one)")
  try:
    return int(text)
  except ValueError:
    raise ValueError(f"${var}={text!r} is not an integer array index") from None


def run_index(points: list[SweepPoint], index: int, runner=None) -> str:
  """Runs point ``index`` (``runner(command)``, default a subprocess) unless it is finished;
  returns what happened ("ran", "finished", "busy")."""
  check_distinct(points)
  if not 0 <= index < len(points):
    raise ValueError(f"--index={index}: the sweep has {len(points)} points (0..{len(points) - 1}); "
                     "size the array with --sweep=count")
  p = points[index]
  if p.finished:
    log.info("point %d (%s) is finished, nothing to do", index, p.name)
    return "finished"
  locks = p.workdir.parent / LOCKS_DIR
  locks.mkdir(parents=True, exist_ok=True)
  with open(locks / f"{p.name}.lock", "w") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      log.warning("point %d (%s) is being run by another task; leaving it", index, p.name)
      return "busy"
    if p.finished:  # finished while we waited for the lock
      return "finished"
    log.info("point %d of %d: %s", index, len(points), shlex.join(p.command))
    (runner or _subprocess)(p.command)
  return "ran"


def _subprocess(command: list[str]) -> None:
  subprocess.run(command, check=True)
