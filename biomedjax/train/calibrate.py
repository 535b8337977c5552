"""Per-run calibration outputs: reliability diagrams and post-hoc temperature scaling.

``config.eval.temperature``: "none", or "fit" — one scalar T > 0 fitted by NLL on the val split's
logits, or on the few-shot train set (eval transform) when the protocol has no val split (the
results say which under ``temperature.fitted_on``). Each evaluated split then also gets
``temperature_scaled``: its accuracy, NLL, ECE (15 bins) and the reference calibration block of
``logits / T`` (T does not change the argmax, so accuracy is unchanged; the point is
calibration), beside the uncalibrated numbers.

``config.eval.reliability``: "all" (default) writes overall and per-class (true and predicted
class) reliability diagrams of every evaluated split except val under
``<workdir>/reliability/`` (plus the overall diagram after temperature scaling); "overall"
writes only the overall ones; "none" none. Multiclass tasks only: ECE and the diagrams are
defined on the top-1 softmax confidence.
"""

from __future__ import annotations

import logging
import pathlib

import numpy as np

from biomedjax import calibration_losses
from biomedjax.evaluation import calibration, metrics, reliability

log = logging.getLogger("biomedjax")
TEMPERATURE = ("none", "fit")
RELIABILITY = ("all", "overall", "none")


def check(config) -> None:
  """The calibration settings of a run (config.eval, config.loss.terms' names and weights),
  checked before the run writes anything."""
  calibration_losses.parse_terms(config.loss.get("terms", ""))
  eval_cfg = config.eval
  if eval_cfg.temperature not in TEMPERATURE:
    raise ValueError(f"config.eval.temperature={eval_cfg.temperature!r}: use one of "
                     f"{TEMPERATURE}")
  if eval_cfg.reliability not in RELIABILITY:
    raise ValueError(f"config.eval.reliability={eval_cfg.reliability!r}: use one of "
                     f"{RELIABILITY}")


def scaled_report(logits, labels, classnames, t: float) -> dict:
  z = np.asarray(logits, np.float64) / t
  return dict(temperature=t, accuracy=metrics.accuracy(z, labels), nll=metrics.nll(z, labels),
              ece=metrics.ece(metrics.softmax(z), labels),
              calibration=calibration.calibration_report(z, labels, classnames))


def diagrams(eval_cfg, workdir, split: str, logits, labels, classnames, t: float | None = None):
  """Writes the split's reliability PNGs (see the module doc); returns their paths."""
  if eval_cfg.reliability == "none" or split == "val":
    return []
  out = pathlib.Path(workdir) / "reliability"
  if t is not None:
    conf, pred = calibration.confidences(np.asarray(logits, np.float64) / t)
    return [reliability.plot(conf, pred == np.asarray(labels), out / f"{split}_T_overall.png",
                             f"{split}: all classes, temperature {t:.3f}")]
  if eval_cfg.reliability == "overall":
    conf, pred = calibration.confidences(logits)
    return [reliability.plot(conf, pred == np.asarray(labels), out / f"{split}_overall.png",
                             f"{split}: all classes")]
  return reliability.write_diagrams(logits, labels, classnames, out, prefix=split)
