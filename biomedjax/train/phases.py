"""A run's phases said out loud, and compilation kept out of the progress bar's clock.

Between the start and the first training step a run reads and checks every image, builds the
backbone, encodes features and compiles the train step: tens of seconds on a small machine that
used to pass in silence, and the first step's compilation then showed as an ETA of hours
(``1/500 [00:56<7:52:33]``). Each phase is logged as it starts, and the bar's clock and rate
restart after the first (compiling) step.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("biomedjax")


def phase(text: str, *args) -> None:
  """One log line naming what the run does now (``"compiling the train step ..."``)."""
  log.info(text, *args)


def restart_clock(bar, done: int, since: float) -> None:
  """After the first step: the bar's elapsed time and rate count from here (``smoothing=0``:
  rate = steps since ``bar.initial`` / time since ``bar.start_t``), and the log says how long the
  compilation took."""
  log.info("train step compiled and run once in %.1f s; the progress bar's rate and ETA count "
           "from here", time.time() - since)
  if getattr(bar, "disable", True):
    return
  # tqdm's ``for i in bar`` keeps its own count, one behind inside the body; ``bar.n`` (what a
  # ``set_postfix`` in the same body shows) must match ``initial`` or the rate is negative.
  bar.initial = bar.n = done
  bar.start_t = bar.last_print_t = bar._time()
