"""The one door every control decision of the training loop goes through.

The loop decides, after a step, whether to save a checkpoint now, stop now (a signal), stop early
(patience ran out), keep an epoch as the best one and drop a lane whose metrics are not finite.
In a multi-process run each such decision gates a collective or a write, so it must be the same
on every process:

* ``Decisions.step``: the step boundary's flags, agreed across processes (``agreement.py``): a
  stop that any process was asked for (a signal reaches one process) stops all of them at the
  same step; decisions from a clock or local state (a checkpoint is due, early stop) are process
  0's. One process: the local values, no communication.
* ``decide``: a decision whose inputs are already global (gathered metrics: the non-finite check,
  the best epoch from replicated accuracies): the local value is the run's.
"""

from __future__ import annotations

from biomedjax.train import agreement


def decide(local: bool) -> bool:
  """The run's decision given this process's ``local`` flag (its inputs are global)."""
  return bool(local)


class Decisions:
  """The agreed control flags of one training loop, step by step."""

  def __init__(self, name: str = "train"):
    self._agree = agreement.Agreement(name)

  def step(self, done: int, *, stop: bool, early: bool, save: bool) -> dict:
    """-> {"stop", "early", "save"} as every process has them after step ``done``."""
    return self._agree.decide(done, any_of={"stop": bool(stop)},
                              from_zero={"early": bool(early), "save": bool(save)})
