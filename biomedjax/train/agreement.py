"""One decision for all processes: control flags made identical at a step boundary.

Why: every process of a multi-process run must take the same branch wherever a branch gates a
collective or a write (save a checkpoint, stop, stop early). Decided from each process's own
clock or signals, they drift apart: one process enters orbax's save barrier while the other
waits for the next step's collective, and both wait forever (issue 21: process 1's clock at 2x
deadlocked the demo at step ~10 every time).

How: at a step boundary each process publishes its local flags in the coordination service's
key-value store (the ``jax.distributed`` coordinator, plain gRPC: no device collective, so it
neither waits for the step's computation nor can be confused with one) and reads every other
process's. Each flag then gets one rule:
  * ``any_of``: true when it is true on any process (a stop requested by a signal that reached
    one process stops all of them at the same step);
  * ``from_zero``: process 0's value (decisions from a clock or local state: "a checkpoint is
    due", "early stop").
Values are JSON, so ints and floats travel as well as booleans. One process: the local values,
no communication.

A peer that does not publish within the distributed timeout (``--distributed_timeout``) is an
``AgreementTimeout`` naming the step and the process waited for, instead of a hang; the first
boundary of a run waits longer (``FIRST_TIMEOUT_S``): processes compile at different speeds.

Cost: one set, one get per other process and one delete per step, all on the coordinator;
``benchmarks/agreement.py`` measures it (README there).
"""

from __future__ import annotations

import collections
import itertools
import json

from biomedjax.train import distributed

FIRST_TIMEOUT_S = distributed.BARRIER_TIMEOUT_S
_SEQUENCE = itertools.count()  # Agreement objects are made in the same order on every process


class AgreementTimeout(RuntimeError):
  """A process did not reach a step boundary within the distributed timeout."""


def _client():
  from jax._src import distributed as jax_distributed  # the client has no public accessor
  return jax_distributed.global_state.client


class Agreement:
  """Makes a dict of control flags identical on all processes (module docstring).

  ``name`` tells apart the agreements of one process's runs (a pack, then its points' runs);
  together with a per-process sequence number it prefixes the coordinator's keys.
  """

  def __init__(self, name: str = "train", timeout_s: float | None = None):
    import jax
    self.count, self.index = jax.process_count(), jax.process_index()
    self.timeout_s = timeout_s if timeout_s is not None else distributed.timeout_s()
    self.prefix = f"biomedjax:agree:{name}:{next(_SEQUENCE)}"
    self._mine = collections.deque()  # this process's published keys, oldest first
    self._first = True

  def decide(self, step: int, any_of: dict | None = None, from_zero: dict | None = None) -> dict:
    """The agreed flags of ``step``: ``any_of`` keys OR-ed (max for ints) over the processes,
    ``from_zero`` keys as process 0 has them. Every process must call it at the same steps."""
    any_of, from_zero = dict(any_of or {}), dict(from_zero or {})
    if self.count == 1:
      return {**any_of, **from_zero}
    client = _client()
    key = f"{self.prefix}/{step}/"
    client.key_value_set(key + str(self.index), json.dumps([any_of, from_zero]))
    self._mine.append(key + str(self.index))
    timeout = FIRST_TIMEOUT_S if self._first else self.timeout_s
    values = {}
    for q in range(self.count):
      if q == self.index:
        values[q] = [any_of, from_zero]
        continue
      try:
        values[q] = json.loads(client.blocking_key_value_get(key + str(q), int(timeout * 1000)))
      except Exception as e:  # the client raises XlaRuntimeError (DEADLINE_EXCEEDED, UNAVAILABLE)
        raise AgreementTimeout(
            f"step {step}: process {self.index} waited {timeout:.0f} s for process {q} to reach "
            f"the step boundary (control-flag agreement) and gave up ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:200] if str(e) else ''}); process {q} is stuck, far "
            "behind or dead (its log says which); raise --distributed_timeout for a machine "
            "that is this slow") from e
    self._first = False
    # Every process has read our key of step-2 once it published step-1's (which it only does
    # after reading ours of step-2): deleting it keeps the coordinator's store small.
    while len(self._mine) > 2:
      client.key_value_delete(self._mine.popleft())
    out = {k: _reduce(v for v in (values[q][0][k] for q in range(self.count))) for k in any_of}
    out.update({k: values[0][1][k] for k in from_zero})
    return out


def _reduce(values):
  values = list(values)
  if all(isinstance(v, bool) for v in values):
    return any(values)
  return max(values)
