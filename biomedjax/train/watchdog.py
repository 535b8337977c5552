"""A run that is stuck still stops: a watchdog thread beside the training loop.

``Guard`` is ``lifecycle.StopRequest`` (the first SIGINT/SIGTERM asks for a checkpoint and a
clean stop at the next step boundary) plus a thread that acts when the main thread cannot:

* **Signals while blocked.** Python runs a signal handler only in the main thread, between
  bytecodes: a main thread blocked in a collective, a barrier or a long device computation never
  runs it, so ``kill PID`` did nothing to a hung run (issue 21). The C-level handler still
  writes the signal's number to ``signal.set_wakeup_fd``'s pipe, which this thread reads. A
  second signal, or a first one that the main thread has not handled within ``GRACE_S``, ends
  the process at once (``os._exit``, status 128 + the signal number) with a message naming the
  last checkpoint and the steps after it that are lost.
* **Hangs.** In a multi-process run the loop reports each phase of a step (``at``). A phase
  that lasts longer than ``max(distributed timeout, 5 x the slowest phase so far)`` (plus
  ``GRACE_S``, so that the agreement's own timeout reports first) means this
  process waits for another that is stuck, far behind or dead: the thread logs the step and
  what it was waiting in, and ends the process (status 1). The other processes then fail at
  their next collective or agreement (a closed connection), or time out the same way. Phases
  marked ``watch=False`` (the first step, which compiles; an evaluation) are not timed, nor is
  anything in a one-process run (there is no one to wait for).

Outside training (setup, evaluation, the report) the usual handlers apply.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
import time

from biomedjax.train import distributed, lifecycle

log = logging.getLogger("biomedjax")

GRACE_S = 5.0  # a signal the main thread has not handled after this long: it is blocked
HANG_FACTOR = 5  # a phase this many times slower than the slowest so far (and the timeout)


class Guard(lifecycle.StopRequest):
  """``StopRequest`` with the watchdog thread (module docstring); ``bool(guard)``: a stop was
  requested. ``saved_step``: the newest checkpoint on disk when the loop starts (None: none).
  ``hang_timeout_s``: None = the distributed timeout in a multi-process run, off otherwise."""

  def __init__(self, saved_step: int | None = None, hang_timeout_s: float | None = None,
               what: str = "training"):
    super().__init__()
    if hang_timeout_s is None:
      import jax
      hang_timeout_s = distributed.timeout_s() if jax.process_count() > 1 else 0
    self.hang_s, self.what = float(hang_timeout_s), what
    self.saved_step, self.step, self.phase = saved_step, None, "starting"
    self._since, self._watched, self._slowest = time.monotonic(), False, 0.0
    self._signals: list[tuple[int, float]] = []
    self._exiting = threading.Lock()
    self._done = threading.Event()
    self._pipe = self._thread = None
    self._old_wakeup = -1

  # -- what the loop reports ----------------------------------------------------------------
  def at(self, step: int, phase: str, watch: bool = True) -> None:
    """The main thread enters ``phase`` of ``step``; ``watch=False``: do not time it."""
    now = time.monotonic()
    if self._watched:
      self._slowest = max(self._slowest, now - self._since)
    self.step, self.phase, self._since, self._watched = step, phase, now, watch

  def saved(self, step: int) -> None:
    """A checkpoint of ``step`` is on disk; logs how long its save took (the grace time a
    scheduler's SIGTERM needs: README "Interruptions")."""
    log.info("checkpoint of step %d saved in %.2f s", step, time.monotonic() - self._since)
    self.saved_step = step

  # -- the thread -----------------------------------------------------------------------------
  def __enter__(self):
    super().__enter__()
    if threading.current_thread() is threading.main_thread():
      r, w = os.pipe()
      os.set_blocking(w, False)
      self._pipe = (r, w)
      self._old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    self._thread = threading.Thread(target=self._watch, name="biomedjax-watchdog", daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._done.set()
    self._thread.join()
    if self._pipe is not None:
      signal.set_wakeup_fd(self._old_wakeup)
      for fd in self._pipe:
        os.close(fd)
    return super().__exit__(*exc)

  def _handle(self, signum, frame):
    if self.signum is not None:
      self.exit_now(signum, f"{signal.Signals(signum).name} received again")
    super()._handle(signum, frame)

  def _watch(self) -> None:
    while not self._done.is_set():
      if self._pipe is None:
        self._done.wait(0.5)
      elif select.select([self._pipe[0]], [], [], 0.5)[0]:
        now = time.monotonic()
        self._signals += [(b, now) for b in os.read(self._pipe[0], 64)
                          if b in (int(s) for s in self.SIGNALS)]
      now = time.monotonic()
      if len(self._signals) >= 2:
        self.exit_now(self._signals[-1][0],
                      f"{signal.Signals(self._signals[-1][0]).name} received again")
      if self._signals and self.signum is None and now - self._signals[0][1] > GRACE_S:
        self.exit_now(self._signals[0][0], (
            f"{signal.Signals(self._signals[0][0]).name} received while the main thread has been "
            f"blocked for {now - self._since:.0f} s in {self._where()}"))
      # + GRACE_S: a wait with its own timeout (the agreement's) reports first, more precisely
      limit = max(self.hang_s, HANG_FACTOR * self._slowest) + GRACE_S
      if self.hang_s and self._watched and now - self._since > limit:
        self.exit_now(None, (
            f"no progress for {now - self._since:.0f} s in {self._where()} (the distributed "
            f"timeout is {self.hang_s:.0f} s): another process is stuck, far behind or dead; "
            "if another process failed or died first, its log has the cause"))

  def _where(self) -> str:
    return f"{self.phase} at step {self.step}" if self.step is not None else self.phase

  def lost(self) -> str:
    """What exiting now does not save."""
    if self.saved_step is None:
      return "no checkpoint was written yet: the run will start over"
    lost = (f"; {self.what} after step {self.saved_step} (up to step {self.step}) is lost"
            if self.step is not None and self.step > self.saved_step else "")
    return f"the last checkpoint is step {self.saved_step}{lost}: run the same command to resume"

  def exit_now(self, signum: int | None, why: str) -> None:
    """Logs ``why`` and what is not saved, then ends the process at once."""
    if not self._exiting.acquire(blocking=False):
      return  # the other thread is exiting already
    jax = sys.modules.get("jax")  # not imported: one process (and no time spent importing it)
    who = (f"process {jax.process_index()} of {jax.process_count()}: "
           if jax is not None and jax.process_count() > 1 else "")
    message = f"{who}{why}; exiting now without a checkpoint: {self.lost()}"
    if log.hasHandlers():
      log.error(message)
    else:
      print(f"error: {message}", file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum if signum else 1)
