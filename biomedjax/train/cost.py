"""Training cost of a run, as the BioMedVR paper's Table 2 reports it: parameters, time, memory.

A ``CostTracker`` is told when each step ends (``after_step``) and when the epoch's extra work
(the per-epoch test evaluation of ``eval.select="best_test"``, early stopping) is done
(``after_epoch_work``). It waits for the device at each epoch's end only (one sync per epoch), so
an epoch's training time covers its steps (the first includes compilation) and the evaluation
time is kept apart. ``summary`` goes into results.json under ``"cost"``:

* ``trainable_parameters``: stored / effective (the method's ``parameter_counts``);
* ``epoch_seconds`` (training steps of each epoch), ``train_seconds`` (their sum),
  ``eval_seconds`` (per-epoch evaluation), ``wall_seconds`` (first step to the end of training);
* ``images_per_second``: training images over training seconds, and ``..._after_first_epoch``
  (compilation excluded) when there are several epochs;
* ``peak_memory_bytes`` with ``memory_source``: the device's ``peak_bytes_in_use``
  (``jax.local_devices()[0].memory_stats()``) where the backend reports it, else the process's
  peak resident set size (``resource.getrusage``, "host_rss": CPU runs).
"""

from __future__ import annotations

import resource
import sys
import time

import jax


def peak_memory() -> tuple[int | None, str]:
  """(bytes, source): the first local device's peak, else this process's peak RSS."""
  try:
    stats = jax.local_devices()[0].memory_stats() or {}
  except Exception:  # backends without memory_stats raise or return None
    stats = {}
  if stats.get("peak_bytes_in_use"):
    return int(stats["peak_bytes_in_use"]), "device"
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(rss if sys.platform == "darwin" else rss * 1024), "host_rss"  # Linux: KiB


class CostTracker:
  """Per-epoch timing of a training loop (see the module doc)."""

  def __init__(self, steps_per_epoch: int, images_per_epoch: int, clock=time.perf_counter):
    self.clock = clock
    self.per_epoch = steps_per_epoch
    self.images_per_epoch = images_per_epoch
    self.epoch_seconds: list[float] = []
    self.eval_seconds = 0.0
    self._start = self._mark = self._end = None

  def begin(self) -> None:
    """Call before the first step (its compilation then counts in the first epoch)."""
    self._start = self._mark = self.clock()

  def after_step(self, done: int, state) -> None:
    """Call after step ``done`` (1-based) was dispatched, with something it computed."""
    if self._start is None:
      self.begin()
    if done % self.per_epoch == 0:
      jax.block_until_ready(state)
      now = self.clock()
      self.epoch_seconds.append(now - self._mark)
      self._mark = self._end = now

  def after_epoch_work(self, done: int) -> None:
    """Call at the end of each loop iteration: time since the epoch's end counts as evaluation."""
    if done % self.per_epoch == 0 and self._mark is not None:
      now = self.clock()
      self.eval_seconds += now - self._mark
      self._mark = self._end = now

  def summary(self, parameter_counts: dict) -> dict:
    train = sum(self.epoch_seconds)
    out = {"trainable_parameters": parameter_counts,
           "epochs_timed": len(self.epoch_seconds),
           "epoch_seconds": [round(s, 4) for s in self.epoch_seconds],
           "train_seconds": round(train, 4), "eval_seconds": round(self.eval_seconds, 4),
           "wall_seconds": round(self._end - self._start if self._end is not None else 0.0, 4),
           "images_per_epoch": self.images_per_epoch,
           "images_per_second": (round(self.images_per_epoch * len(self.epoch_seconds) / train, 3)
                                 if train > 0 else None)}
    later = self.epoch_seconds[1:]
    if later and sum(later) > 0:
      out["images_per_second_after_first_epoch"] = round(
          self.images_per_epoch * len(later) / sum(later), 3)
    out["peak_memory_bytes"], out["memory_source"] = peak_memory()
    return out
