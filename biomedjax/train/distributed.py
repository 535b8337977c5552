"""Multi-process runs: ``jax.distributed`` from explicit settings, or from the cluster's own.

A run spans several processes (hosts, or several processes on one machine) when either
  * all three settings are given, as flags (``--coordinator_address``, ``--num_processes``,
    ``--process_id``) or environment variables (``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``; a flag wins over its variable), or
  * JAX can detect the cluster itself: a multi-host TPU VM (``TPU_WORKER_HOSTNAMES`` lists
    several hosts), a SLURM job with several tasks, Open MPI with several ranks. Settings given
    there override what JAX detects.
Otherwise it is one process and ``jax.distributed`` is not started.

Why explicit settings: ``jax.distributed.initialize()`` without arguments only works where JAX
recognises the cluster; several GPU machines without SLURM, or processes on one machine, need
all three values. Some but not all of them outside a detected cluster is a mistake (a typo in
one variable, a node started without its id) that would otherwise surface as a hang or as
JAX's bare "Number of processes must be defined": it is one error naming what is missing,
raised before the run writes anything.

On CPU the processes exchange data with gloo over TCP (``jax_cpu_collectives_implementation``),
which is what lets the multi-process path run, and be tested, on one machine without
accelerators. A process that dies (killed, out of memory, a crashed host) is noticed by the
others at their next collective (its connection closes) or, outside one, when the coordinator
has missed its heartbeats for ``heartbeat_timeout_s``; they then exit with an error
(``stop_all_on_error``) instead of waiting forever. The default (60 s, JAX's is 100 s) is short
enough for a user to notice and long enough for a busy host; it can be changed with
``--distributed_timeout`` or ``BIOMEDJAX_DISTRIBUTED_TIMEOUT``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Mapping

log = logging.getLogger("biomedjax")

ENV_ADDRESS, ENV_COUNT, ENV_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"
ENV_TIMEOUT = "BIOMEDJAX_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_S = 60
_timeout_s = DEFAULT_TIMEOUT_S  # this run's, once ``initialize`` has run


class DistributedSettingsError(ValueError):
  """An inconsistent set of multi-process settings; the message names each value at fault."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """What ``jax.distributed.initialize`` gets; ``None`` fields are left to JAX's detection."""
  coordinator_address: str | None
  num_processes: int | None
  process_id: int | None
  heartbeat_timeout_s: int = DEFAULT_TIMEOUT_S
  auto_detect: bool = False  # a detected cluster fills in the fields that are None


def detected_cluster(environ: Mapping[str, str] = os.environ) -> str | None:
  """The multi-process cluster JAX can configure itself from, named; None when there is none."""
  if "," in environ.get("TPU_WORKER_HOSTNAMES", ""):
    return "TPU VM (TPU_WORKER_HOSTNAMES)"
  if _int_or_none(environ.get("SLURM_NTASKS")) not in (None, 0, 1):
    return "SLURM (SLURM_NTASKS)"
  if _int_or_none(environ.get("OMPI_COMM_WORLD_SIZE")) not in (None, 0, 1):
    return "Open MPI (OMPI_COMM_WORLD_SIZE)"
  return None


def _int_or_none(value):
  try:
    return int(value)
  except (TypeError, ValueError):
    return None


def _parse_int(value, name: str, minimum: int) -> int | None:
  if value is None or value == "":
    return None
  try:
    out = int(value)
  except (TypeError, ValueError):
    out = None
  if out is None or out < minimum:
    raise DistributedSettingsError(f"{name}={value!r} must be an integer >= {minimum}")
  return out


def resolve(coordinator_address: str | None = None, num_processes: int | str | None = None,
            process_id: int | str | None = None, timeout_s: int | str | None = None,
            environ: Mapping[str, str] = os.environ) -> Settings | None:
  """Flags (arguments) over environment variables -> ``Settings``, or None for one process.

  Raises ``DistributedSettingsError`` for a bad combination: some but not all three settings
  outside a detected cluster, a process id not below the process count, a malformed address.
  """
  def pick(flag_value, flag: str, env: str):
    if flag_value not in (None, ""):
      return flag_value, f"--{flag}"
    return environ.get(env) or None, env

  address, address_src = pick(coordinator_address, "coordinator_address", ENV_ADDRESS)
  count_raw, count_src = pick(num_processes, "num_processes", ENV_COUNT)
  pid_raw, pid_src = pick(process_id, "process_id", ENV_ID)
  timeout_raw, timeout_src = pick(timeout_s, "distributed_timeout", ENV_TIMEOUT)
  count = _parse_int(count_raw, count_src, 1)
  pid = _parse_int(pid_raw, pid_src, 0)
  timeout = _parse_int(timeout_raw, timeout_src, 1) or DEFAULT_TIMEOUT_S
  if address is not None:
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or _int_or_none(port) is None:
      raise DistributedSettingsError(
          f"{address_src}={address!r} must be HOST:PORT of process 0 (e.g. 10.0.0.1:1234)")
  if count is not None and pid is not None and pid >= count:
    raise DistributedSettingsError(
        f"{pid_src}={pid} must be below {count_src}={count} (ids run from 0 to {count - 1})")
  given = [("coordinator_address", ENV_ADDRESS, address_src, address),
           ("num_processes", ENV_COUNT, count_src, count), ("process_id", ENV_ID, pid_src, pid)]
  if detected_cluster(environ):
    return Settings(address, count, pid, timeout, auto_detect=True)
  if all(v is None for *_, v in given):
    return None
  if any(v is None for *_, v in given):
    have = ", ".join(f"{src}={v!r}" for _, _, src, v in given if v is not None)
    missing = " and ".join(f"--{f} (or {e})" for f, e, _, v in given if v is None)
    raise DistributedSettingsError(
        f"a multi-process run needs a coordinator address, a process count and a process id; "
        f"got {have} but no {missing}, and no TPU VM, SLURM or Open MPI cluster was detected "
        "to supply them")
  if count == 1:
    return None  # one process: nothing to coordinate
  return Settings(address, count, pid, timeout)


def initialize(settings: Settings | None) -> None:
  """Starts ``jax.distributed`` (before any JAX computation); a no-op for one process."""
  if settings is None:
    return
  import jax
  if os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION") is None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  kwargs = {}
  if not settings.auto_detect:
    kwargs["cluster_detection_method"] = "deactivate"
  global _timeout_s
  t = _timeout_s = settings.heartbeat_timeout_s
  jax.distributed.initialize(
      settings.coordinator_address, settings.num_processes, settings.process_id,
      heartbeat_timeout_seconds=t, initialization_timeout=max(t, 300),
      shutdown_timeout_seconds=t, **kwargs)
  # Every process is here now (connecting waits for all): create the gloo communicator while
  # they are in step, since XLA gives the first CPU collective only 30 s to assemble them.
  from jax.experimental import multihost_utils
  multihost_utils.sync_global_devices("biomedjax:start")
  log.info("process %d of %d (coordinator %s)", jax.process_index(), jax.process_count(),
           settings.coordinator_address or "detected")


def leave_together() -> None:
  """Before a multi-process run's processes exit at once on an agreed stop (``os._exit``): JAX's
  shutdown barrier, so that no process outlives the coordinator. Process 0 hosts the
  coordination service; when it left first, a peer still finishing its last line found the
  service gone and aborted (SIGABRT, status -6, seen under load in the SIGTERM test of
  tests/faults/test_two_processes.py). Every process reaches this together (the stop is agreed
  at one step); a peer that does not arrive within the timeout is not waited for longer."""
  import jax
  if jax.process_count() == 1:
    return
  try:
    jax.distributed.shutdown()
  except Exception as e:  # noqa: BLE001  (a peer gone: exiting is all that is left to do)
    log.warning("leaving the other processes: %s", str(e).splitlines()[0][:200] if str(e) else e)


def timeout_s() -> int:
  """The run's distributed timeout in seconds (``--distributed_timeout``; 60 by default): how
  long a process waits for another before it counts as stuck or dead."""
  return _timeout_s


def process_id_before_start(settings: Settings | None,
                            environ: Mapping[str, str] = os.environ) -> int:
  """This process's id without starting JAX (a sweep's parent, which only launches runs)."""
  if settings is None:
    return 0
  if settings.process_id is not None:
    return settings.process_id
  for var in ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "TPU_WORKER_ID"):
    if _int_or_none(environ.get(var)) is not None:
      return int(environ[var])
  return 0


def from_process_zero(tree):
  """Process 0's value of a host pytree on every process (a fit's result, computed by each).

  Every process fits on the same gathered features, but a closed-form or iterative solver on
  different CPUs (or BLAS thread counts) may round differently; replicas of a "replicated"
  array must be identical, so all processes take process 0's.
  """
  import jax
  if jax.process_count() == 1:
    return tree
  from jax.experimental import multihost_utils
  return multihost_utils.broadcast_one_to_all(tree)


BARRIER_TIMEOUT_S = 3600  # waiting for another process's setup; a dead one is caught sooner


def barrier(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
  """Waits until every process gets here (through the coordinator, not a device collective).

  A device collective would do, but XLA's gloo gives the first collective of a run only 30 s for
  every process to arrive; the coordinator's barrier waits ``timeout_s``. A process that dies
  meanwhile is caught by the heartbeat timeout (``initialize``), so the long wait cannot hang.
  """
  from jax._src import distributed as jax_distributed  # the client has no public accessor
  jax_distributed.global_state.client.wait_at_barrier(f"biomedjax:{name}", timeout_s * 1000)


@contextlib.contextmanager
def process_zero_first(name: str):
  """Process 0 runs the block, then the others do, then all continue together.

  For blocks that create files in the shared workdir: ``config.json``, generated synthetic
  images, a random model's vocabulary. Written by all processes at once, such files race (one
  process renaming a temporary file another already renamed, or reading a half-written image).
  Run by process 0 first, the block creates them; the others then find them and only read (or
  rewrite identical bytes). One process: the block just runs.
  """
  import jax
  if jax.process_count() == 1:
    yield
    return
  if jax.process_index() != 0:
    barrier(f"{name}:first")
  yield
  if jax.process_index() == 0:
    barrier(f"{name}:first")
  barrier(f"{name}:done")


@contextlib.contextmanager
def stop_all_on_error(workdir):
  """A multi-process run's failure: one clear message, and an exit now rather than a hang.

  When a process dies, the others fail in their next collective ("Connection closed by peer")
  or, if not in one, when the coordinator misses its heartbeats. Left alone, each survivor
  would then wait at JAX's exit barrier for the dead process until the shutdown timeout and
  abort with a C++ stack trace. Instead the error is logged with what it most likely means and
  the process exits at once (``os._exit``: the exit barrier can only fail).
  """
  try:
    yield
  except BaseException as e:  # noqa: B036  (KeyboardInterrupt too: the others must stop)
    import jax
    from biomedjax.train import lifecycle
    if jax.process_count() == 1 or isinstance(e, lifecycle.Interrupted):
      raise  # a clean stop that every process took at the same step (``agreement``)
    import traceback
    traceback.print_exc()
    msg = str(e).splitlines()[0][:300] if str(e) else ""
    log.error("process %d of %d stopped: %s: %s. If another process failed or died first "
              "(killed, out of memory, host lost), its log has the cause. Checkpoints in %s are "
              "intact: run the same command on every process again to resume.",
              jax.process_index(), jax.process_count(), type(e).__name__, msg, workdir)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
