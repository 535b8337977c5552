"""The one door every control decision of the training loop goes through.

The loop decides, after a step, whether to save a checkpoint now, stop now (a signal), stop early
(patience ran out), keep an epoch as the best one and drop a lane whose metrics are not finite.
In a multi-process run each such decision gates a collective or a write, so it must be the same
on every process. ``decide`` is where a local flag becomes the run's decision; today it is the
identity (every input of these decisions is already global: gathered metrics, a shared clock
rule), and a cross-process agreement plugs in here and nowhere else.
"""

from __future__ import annotations


def decide(local: bool) -> bool:
  """The run's decision given this process's ``local`` flag."""
  return bool(local)
