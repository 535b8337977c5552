"""The training-cost table of a report, beside the accuracy tables (BioMedVR's Table 2 shape).

One row per method over the runs that recorded a ``"cost"`` block (``biomedjax/train/cost.py``):
trainable parameters (stored / effective), seconds per epoch (mean over the epochs after the
first, which includes compilation; the first when there is one), total training seconds, images
per second (after the first epoch where there are several) and peak memory, each the mean over
the method's runs, with the number of runs and where the memory figure comes from. Runs without
the block (older runs, packed sweeps) are counted apart, never guessed.
"""

from __future__ import annotations

import collections
import statistics

_MIB = 2 ** 20


def _epoch_seconds(cost: dict) -> float | None:
  epochs = cost.get("epoch_seconds") or []
  later = epochs[1:] or epochs
  return statistics.mean(later) if later else None


def _mean(values) -> float | None:
  values = [v for v in values if v is not None]
  return statistics.mean(values) if values else None


def _fmt(value, spec: str) -> str:
  return "-" if value is None else format(value, spec)


def _params(costs, key: str) -> str:
  values = sorted({c["trainable_parameters"][key] for c in costs
                   if isinstance(c.get("trainable_parameters"), dict)})
  return " / ".join(f"{v:,}" for v in values) or "-"


def cost_table(runs: list[dict]) -> str:
  """Markdown section ("" when no run has a cost block)."""
  by_method = collections.defaultdict(list)
  missing = 0
  for r in runs:
    if isinstance(r.get("cost"), dict):
      by_method[r["method"]].append(r["cost"])
    else:
      missing += 1
  if not by_method:
    return ""
  rows = []
  for method in sorted(by_method):
    costs = by_method[method]
    ips = _mean(c.get("images_per_second_after_first_epoch", c.get("images_per_second"))
                for c in costs)
    peak = _mean(c.get("peak_memory_bytes") for c in costs)
    sources = "/".join(sorted({c.get("memory_source", "?") for c in costs}))
    rows.append([method, _params(costs, "stored"), _params(costs, "effective"),
                 _fmt(_mean(_epoch_seconds(c) for c in costs), ".3f"),
                 _fmt(_mean(c.get("train_seconds") for c in costs), ".1f"),
                 _fmt(ips, ".1f"), _fmt(None if peak is None else peak / _MIB, ".0f"),
                 sources, str(len(costs))])
  header = ["method", "params stored", "params effective", "s / epoch", "train s (total)",
            "images / s", "peak memory (MiB)", "memory of", "runs"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  note = (f"\n{missing} run(s) recorded no cost and are not in this table.\n" if missing else "")
  return ("\n## Training cost per method (mean over runs; s / epoch and images / s after the "
          "first epoch, which includes compilation; memory: device peak, or the process's peak "
          "RSS on CPU)\n\n" + "\n".join(lines) + "\n" + note)
