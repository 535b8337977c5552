"""One run per workdir: a lock file naming the run that holds it.

Two launches on one workdir (a command started twice, a sweep and a job array over the same
points, two terminals) used to train side by side, both writing checkpoints, TensorBoard and
results. A run now holds ``<workdir>/run.lock`` while it runs: JSON with the host, PID and start
time of its holder, created exclusively (``O_CREAT | O_EXCL``, which shared filesystems honour,
unlike ``flock``). A second launch is ``WorkdirLocked``, one line naming the holder.

* A lock left by a killed run (SIGKILL, a lost node) whose PID is gone on this same host is
  taken over with a warning. One from another host cannot be checked from here: the message
  says to delete it once that run is known to be gone.
* A multi-process run locks once: process 0 takes the lock and the others learn the outcome
  from the coordinator, so all of them stop with the same line when it is taken.
* Locks are per process and re-entrant: a packed sweep locks all its points' workdirs (and the
  pack's), and a point it then runs alone locks its workdir again without conflict.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import itertools
import json
import logging
import os
import pathlib
import socket

log = logging.getLogger("biomedjax")

LOCK_FILE = "run.lock"
_held: dict[pathlib.Path, int] = {}  # lock path -> re-entry count, in this process


class WorkdirLocked(RuntimeError):
  """The workdir is in use by another run; the message names it and what to do."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's process
  return True


def _describe(holder: dict) -> str:
  return (f"PID {holder.get('pid')} on host {holder.get('host')} since "
          f"{holder.get('started', '?')}")


def _create(path: pathlib.Path, me: dict) -> bool:
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  with os.fdopen(fd, "w") as f:
    json.dump(me, f)
  return True


def acquire(workdir) -> pathlib.Path:
  """Takes ``workdir``'s lock for this process (module docstring) -> the lock file."""
  workdir = pathlib.Path(workdir)
  path = (workdir / LOCK_FILE).absolute()
  if path in _held:
    _held[path] += 1
    return path
  workdir.mkdir(parents=True, exist_ok=True)
  me = {"host": socket.gethostname(), "pid": os.getpid(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
  for _ in range(3):  # a stale lock taken over, or a holder that just released it: try again
    if _create(path, me):
      _held[path] = 1
      return path
    try:
      holder = json.loads(path.read_text())
    except FileNotFoundError:
      continue  # released meanwhile
    except (OSError, ValueError):
      holder = {}  # half written by a launch killed at that instant, or garbage
    stale = holder.get("host") == me["host"] and not _alive(int(holder.get("pid", -1)))
    if not stale:
      raise WorkdirLocked(
          f"{workdir} is in use by another run ({_describe(holder)}; lock file {path}): wait for "
          "it to finish, or use another --workdir; if that run is gone (its host was lost), "
          "delete the lock file")
    log.warning("%s: taking over the lock of a run that is gone (%s)", workdir, _describe(holder))
    stale_path = path.with_name(f".{LOCK_FILE}.stale-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
      os.replace(path, stale_path)  # of two racing takers, one moves the stale lock away ...
      try:
        moved = json.loads(stale_path.read_text())
      except (OSError, ValueError):
        moved = {}
      if moved.get("pid") != holder.get("pid"):  # ... the other the winner's: put it back
        os.replace(stale_path, path)
      else:
        os.remove(stale_path)
  raise WorkdirLocked(f"{workdir}: could not take the lock {path} (other launches keep taking "
                      "it); make sure only one run uses this workdir")


def release(path: pathlib.Path) -> None:
  _held[path] -= 1
  if _held[path] == 0:
    del _held[path]
    with contextlib.suppress(FileNotFoundError, ValueError, OSError):
      if json.loads(path.read_text()).get("pid") == os.getpid():
        path.unlink()


@contextlib.contextmanager
def hold(*workdirs):
  """Holds the locks of ``workdirs`` for the block; in a multi-process run process 0 takes them
  and every process raises the same ``WorkdirLocked`` when one is taken."""
  import jax
  paths, error = [], None
  try:
    if jax.process_index() == 0:
      try:
        for w in workdirs:
          paths.append(acquire(w))
      except WorkdirLocked as e:
        error = str(e)
    if jax.process_count() > 1:
      error = _share(error)
    if error:
      raise WorkdirLocked(error)
    yield
  finally:
    for p in reversed(paths):
      release(p)


def _share(error: str | None) -> str | None:
  """Process 0's outcome on every process (through the coordinator's key-value store)."""
  import jax
  from biomedjax.train import agreement, distributed
  key = f"biomedjax:lock:{next(_SHARED)}"  # ``hold`` runs in the same order on every process
  client = agreement._client()  # noqa: SLF001
  if jax.process_index() == 0:
    client.key_value_set(key, json.dumps(error))
    return error
  return json.loads(client.blocking_key_value_get(key, distributed.BARRIER_TIMEOUT_S * 1000))


_SHARED = itertools.count()


def locked(fn):
  """Decorator: ``fn(config, workdir, ...)`` runs holding ``workdir``'s lock."""
  @functools.wraps(fn)
  def wrapper(config, workdir, *args, **kwargs):
    with hold(workdir):
      return fn(config, workdir, *args, **kwargs)
  return wrapper
