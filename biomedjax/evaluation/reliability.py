"""Reliability diagrams (PNG) of one evaluation: overall and per class, as CalibPrompt draws them.

Per equal-width confidence bin: a bar at the bin's accuracy, a red "gap" bar between the accuracy
and the bin midpoint (the reference's display; ``gap="confidence"`` draws it to the bin's mean
confidence instead), the number of samples above each bar, the diagonal of perfect calibration,
and ECE / MCE / ACE in the title. Per class there are two views, as in the reference's evaluator:
the samples of a true class ("gt") and the samples predicted as it ("pred").

Matplotlib is imported inside the functions: training does not need it until it writes plots.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence

import numpy as np

from biomedjax.evaluation import calibration as cal

GAPS = ("midpoint", "confidence")


def _safe(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def plot(conf, correct, path, title: str, n_bins: int = cal.N_BINS, gap: str = "midpoint",
         ece_mode: str = "reference") -> pathlib.Path:
  """Writes one reliability diagram to ``path`` (PNG); returns the path."""
  if gap not in GAPS:
    raise ValueError(f"reliability gap {gap!r}: use one of {GAPS}")
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  conf, correct = np.asarray(conf, np.float64), np.asarray(correct, np.float64)
  b = cal.reliability_bins(conf, correct, n_bins, ece_mode)
  edges, width = b["edges"], 1.0 / n_bins
  mids = edges[:-1] + width / 2
  filled = b["count"] > 0
  ref = mids if gap == "midpoint" else b["confidence"]
  fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
  ax.bar(mids[filled], b["accuracy"][filled], width=width, edgecolor="black", color="#4c72b0",
         label="accuracy")
  lo = np.minimum(b["accuracy"], ref)[filled]
  ax.bar(mids[filled], np.abs(ref - b["accuracy"])[filled], bottom=lo, width=width,
         edgecolor="#b22222", color="#e06666", alpha=0.55, hatch="//",
         label=f"gap to {'bin midpoint' if gap == 'midpoint' else 'mean confidence'}")
  ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
  for x, acc, n in zip(mids[filled], b["accuracy"][filled], b["count"][filled]):
    ax.text(x, max(acc, 0) + 0.015, f"n={int(n)}", ha="center", va="bottom", fontsize=7)
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.08)
  ax.set_xticks(edges)
  ax.set_xticklabels([f"{e:.1f}" for e in edges], fontsize=8)
  ax.set_xlabel("confidence (max softmax probability)")
  ax.set_ylabel("accuracy in bin")
  n = len(conf)
  scores = (f"ECE {cal.ece(conf, correct, n_bins, ece_mode):.2f}%  "
            f"MCE {cal.mce(conf, correct, n_bins):.2f}%  ACE {cal.ace(conf, correct, n_bins):.2f}%"
            f"  ({n_bins} bins, calibration reference)" if n else "no samples")
  ones = int(np.sum(conf == 1.0)) if ece_mode == "reference" else 0
  note = f"\n{ones} at confidence 1.0: in bin weights, not in bars (reference)" if ones else ""
  ax.set_title(f"{title} (N={n})\n{scores}{note}", fontsize=9)
  ax.legend(loc="upper left", fontsize=8)
  ax.grid(alpha=0.25)
  fig.tight_layout()
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path)
  plt.close(fig)
  return path


def write_diagrams(logits, labels, classnames: Sequence[str], out_dir, prefix: str = "",
                   n_bins: int = cal.N_BINS, gap: str = "midpoint") -> list[pathlib.Path]:
  """Overall + per-class (gt and pred views) diagrams of one split -> the PNG paths.

  Like the reference, the per-class views cover the classes present in ``labels``; a pred view
  with no predictions is drawn empty (titled "no samples").
  """
  conf, pred = cal.confidences(logits)
  labels = np.asarray(labels)
  correct = pred == labels
  out_dir = pathlib.Path(out_dir)
  tag = f"{prefix}_" if prefix else ""
  paths = [plot(conf, correct, out_dir / f"{tag}overall.png", f"{prefix or 'all'}: all classes",
                n_bins, gap)]
  for c in np.unique(labels):
    name = classnames[int(c)]
    for view, sel, what in (("gt", labels == c, "true class"), ("pred", pred == c, "predicted")):
      paths.append(plot(conf[sel], correct[sel], out_dir / f"{tag}{view}_{_safe(name)}.png",
                        f"{prefix or 'all'}: {what} = {name}", n_bins, gap))
  return paths
