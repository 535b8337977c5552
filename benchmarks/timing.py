"""The one timing rule every benchmark here uses: a warm-up call, then the median of N calls."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of ``fn()`` over ``repeats`` calls, after one untimed call (compilation,
  allocation, autotuning). ``fn`` must block until its result is ready."""
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)
