"""Ctrl-C in the middle of a run, in-process: the engine's own handler then finishes the step,
saves a checkpoint and raises ``lifecycle.Interrupted``. Shared by the resume tests of single
runs and packs (tests/train/test_tower_state.py, tests/train/test_packed.py)."""

from __future__ import annotations

import contextlib
import os
import signal


@contextlib.contextmanager
def sigint_at_step(stepper_cls, n: int):
  """While open, the ``n``-th step dispatched by any ``stepper_cls`` (a class with
  ``make_step(self, mesh)``, e.g. ``loop.SingleStepper``, ``packed.PackProgram``) sends this
  process a SIGINT just before it runs."""
  make_step = stepper_cls.make_step

  def interrupting(self, mesh):
    step, calls = make_step(self, mesh), []

    def run(*args):
      calls.append(1)
      if len(calls) == n:
        os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the step finishes, then a checkpoint
      return step(*args)
    return run

  stepper_cls.make_step = interrupting
  try:
    yield
  finally:
    stepper_cls.make_step = make_step
