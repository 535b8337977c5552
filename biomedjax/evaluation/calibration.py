"""Calibration metrics as CalibPrompt computes them, and post-hoc temperature scaling.

The reference (``iabh1shekbasu/CalibPrompt``: ``tools/metrics.py`` and
``evaluators/vl_evaluator.py``) scores the test split of the last-epoch model: p = softmax of the
logits in float64, prediction = argmax p, confidence = max p, 10 bins. Every number here is in
percent, as the reference prints it. Its quirks are reproduced by default, the textbook version is
an option:

* ``ece``: equal-width bins [k/10, (k+1)/10). Bin weights come from ``np.histogram``, which closes
  the last bin, but bin accuracy and mean confidence come from ``np.digitize(conf, edges) - 1``,
  which puts a confidence of exactly 1.0 in an eleventh bin that is never read. So a sample at
  1.0 adds weight to bin 9 without adding to its accuracy or confidence (``mode="reference"``).
  ``mode="standard"`` counts it in bin 9 everywhere (last bin closed).
* ``mce``: bins from ``np.digitize`` on the interior edges 0.1..0.9 (the last bin [0.9, inf)
  includes 1.0); the reference takes ``max_k (n_k/N) |acc_k - conf_k|``, a gap weighted by bin
  mass (``mode="reference"``); ``mode="standard"`` is ``max_k |acc_k - conf_k|``.
* ``ace``: equal-mass bins from scikit-learn's ``KBinsDiscretizer(n_bins=10, strategy="quantile",
  encode="ordinal")``: edges at the percentiles 0, 10, ..., 100 of the confidences, edges closer
  than 1e-8 merged (so ties give fewer bins), bin = ``searchsorted(inner edges, conf, "right")``.
  The reference leaves scikit-learn unpinned, and the percentile method changed from "linear"
  (up to 1.8) to "averaged_inverted_cdf" (1.9): ``quantile="linear"`` by default.
* ``ece_kde``: leave-one-out Gaussian-kernel estimate of the accuracy at each confidence,
  ``acc_i = sum_{j!=i} K_ij c_j / sum_{j!=i} K_ij``, ``mean_i |conf_i - acc_i|``; bandwidth 0.3
  (N < 100), 0.2 (< 500), 0.1 (< 2000), else 0.05. Not the Dirichlet-kernel estimator of the
  literature. The reference runs it in float32 torch; here float64 (differences ~1e-6 %).
* per-class ECE over the samples of each true class present ("gt") and over those predicted as it
  ("pred"), with their means. A present class that is never predicted has no samples in the pred
  view: the reference divides 0 by 0 (NaN, which then poisons the mean); here it is ``None`` and
  the mean is over the classes that have a value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_BINS = 10
ECE_MODES = ("reference", "standard")
QUANTILE_METHODS = ("linear", "averaged_inverted_cdf")


def confidences(logits) -> tuple[np.ndarray, np.ndarray]:
  """(confidence, prediction) from logits: max and argmax of the float64 softmax."""
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2:
    raise ValueError(f"logits must be (N, num_classes), got shape {logits.shape}")
  z = logits - logits.max(axis=1, keepdims=True)
  p = np.exp(z)
  p /= p.sum(axis=1, keepdims=True)
  pred = p.argmax(axis=1)
  return p[np.arange(len(p)), pred], pred


def _inputs(conf, correct) -> tuple[np.ndarray, np.ndarray]:
  conf = np.asarray(conf, np.float64)
  correct = np.asarray(correct, np.float64)
  if conf.ndim != 1 or conf.shape != correct.shape:
    raise ValueError(f"conf {conf.shape} and correct {correct.shape} must be equal 1-D shapes")
  if conf.size and (conf.min() < 0 or conf.max() > 1 or not np.isfinite(conf).all()):
    raise ValueError("confidences must lie in [0, 1]")
  return conf, correct


def _bin_stats(bins: np.ndarray, conf, correct, n_bins: int):
  """Per-bin (count, accuracy, mean confidence) for bin ids in [0, n_bins); others dropped."""
  keep = (bins >= 0) & (bins < n_bins)
  count = np.bincount(bins[keep], minlength=n_bins).astype(np.float64)
  acc_sum = np.bincount(bins[keep], weights=correct[keep], minlength=n_bins)
  conf_sum = np.bincount(bins[keep], weights=conf[keep], minlength=n_bins)
  safe = np.maximum(count, 1)
  return count, np.where(count > 0, acc_sum / safe, 0.0), np.where(count > 0, conf_sum / safe, 0.0)


def reliability_bins(conf, correct, n_bins: int = N_BINS, mode: str = "reference") -> dict:
  """The equal-width bins behind ``ece`` (and the reliability diagram).

  Returns edges (n_bins + 1), weight (fraction of samples per bin, numpy histogram: the last bin
  closed), count (samples that enter the bin's accuracy/confidence), accuracy and confidence
  (0 for an empty bin). In ``mode="reference"`` a confidence of exactly 1.0 is in ``weight`` but
  not in ``count``/``accuracy``/``confidence``.
  """
  if mode not in ECE_MODES:
    raise ValueError(f"ECE mode {mode!r}: use one of {ECE_MODES}")
  conf, correct = _inputs(conf, correct)
  edges = np.linspace(0, 1, n_bins + 1)
  bins = np.digitize(conf, edges) - 1
  if mode == "standard":
    bins = np.minimum(bins, n_bins - 1)
  count, acc, mean_conf = _bin_stats(bins, conf, correct, n_bins)
  weight = np.histogram(conf, edges)[0] / max(len(conf), 1)
  return dict(edges=edges, weight=weight, count=count, accuracy=acc, confidence=mean_conf)


def ece(conf, correct, n_bins: int = N_BINS, mode: str = "reference") -> float:
  """Expected calibration error in %: 100 sum_k w_k |conf_k - acc_k|."""
  b = reliability_bins(conf, correct, n_bins, mode)
  if not len(np.asarray(conf)):
    return float("nan")
  return float(100 * np.sum(b["weight"] * np.abs(b["confidence"] - b["accuracy"])))


def mce(conf, correct, n_bins: int = N_BINS, mode: str = "reference") -> float:
  """Maximum calibration error in %, over the non-empty bins (see the module docstring)."""
  if mode not in ECE_MODES:
    raise ValueError(f"MCE mode {mode!r}: use one of {ECE_MODES}")
  conf, correct = _inputs(conf, correct)
  bins = np.digitize(conf, np.linspace(0, 1, n_bins + 1)[1:-1])
  count, acc, mean_conf = _bin_stats(bins, conf, correct, n_bins)
  gap = np.abs(acc - mean_conf)[count > 0]
  if mode == "reference":
    gap = gap * count[count > 0] / len(conf)
  return float(100 * gap.max())


def quantile_bins(conf, n_bins: int = N_BINS, quantile: str = "linear") -> np.ndarray:
  """Equal-mass bin ids, as ``KBinsDiscretizer(strategy="quantile", encode="ordinal")``."""
  if quantile not in QUANTILE_METHODS:
    raise ValueError(f"ACE quantile method {quantile!r}: use one of {QUANTILE_METHODS}")
  conf = np.asarray(conf, np.float64)
  if conf.min() == conf.max():  # scikit-learn: a constant feature is one bin
    return np.zeros(len(conf), np.int64)
  edges = np.asarray(np.percentile(conf, np.linspace(0, 100, n_bins + 1), method=quantile))
  edges = edges[np.ediff1d(edges, to_begin=np.inf) > 1e-8]
  return np.searchsorted(edges[1:-1], conf, side="right")


def ace(conf, correct, n_bins: int = N_BINS, quantile: str = "linear") -> float:
  """Adaptive (equal-mass) calibration error in %: 100 sum_b (n_b/N) |acc_b - conf_b|."""
  conf, correct = _inputs(conf, correct)
  bins = quantile_bins(conf, n_bins, quantile)
  count, acc, mean_conf = _bin_stats(bins, conf, correct, n_bins)
  return float(100 * np.sum(count / len(conf) * np.abs(acc - mean_conf)))


def kde_bandwidth(n: int) -> float:
  return 0.3 if n < 100 else 0.2 if n < 500 else 0.1 if n < 2000 else 0.05


def ece_kde(conf, correct, bandwidth: float | None = None) -> float:
  """Leave-one-out Gaussian-kernel calibration error in % (O(N^2) memory, as the reference)."""
  conf, correct = _inputs(conf, correct)
  h = kde_bandwidth(len(conf)) if bandwidth is None else bandwidth
  k = np.exp(-(conf[:, None] - conf[None, :]) ** 2 / (2 * h * h))
  np.fill_diagonal(k, 0.0)
  k /= np.maximum(k.sum(axis=1, keepdims=True), 1e-10)
  return float(100 * np.mean(np.abs(conf - k @ correct)))


def per_class_ece(conf, pred, labels, classnames: Sequence[str], n_bins: int = N_BINS,
                  mode: str = "reference") -> dict:
  """ECE per present true class ("gt") and per predicted class ("pred"), and their means."""
  conf, pred, labels = np.asarray(conf, np.float64), np.asarray(pred), np.asarray(labels)
  correct = pred == labels
  out = {"gt": {}, "pred": {}}
  for c in np.unique(labels):
    name = classnames[int(c)]
    for view, sel in (("gt", labels == c), ("pred", pred == c)):
      out[view][name] = ece(conf[sel], correct[sel], n_bins, mode) if sel.any() else None
  for view in ("gt", "pred"):
    values = [v for v in out[view].values() if v is not None]
    out[f"mean_{view}"] = float(np.mean(values)) if values else None
  return out


def calibration_report(logits, labels, classnames: Sequence[str], n_bins: int = N_BINS,
                       ece_mode: str = "reference", mce_mode: str = "reference",
                       ace_quantile: str = "linear") -> dict:
  """The reference's calibration block of one evaluation (values in %, JSON-serialisable)."""
  conf, pred = confidences(logits)
  labels = np.asarray(labels)
  if labels.shape != pred.shape:
    raise ValueError(f"labels {labels.shape} do not match logits {np.shape(logits)}")
  correct = (pred == labels).astype(np.float64)
  bins = reliability_bins(conf, correct, n_bins, ece_mode)
  return dict(
      confidence=float(conf.mean()),                       # 0-1 scale, as the reference
      ece=ece(conf, correct, n_bins, ece_mode),
      mce=mce(conf, correct, n_bins, mce_mode),
      ace=ace(conf, correct, n_bins, ace_quantile),
      ece_kde=ece_kde(conf, correct),
      per_class_ece=per_class_ece(conf, pred, labels, classnames, n_bins, ece_mode),
      bins={k: v.tolist() for k, v in bins.items()},
      settings=dict(n_bins=n_bins, ece=ece_mode, mce=mce_mode, ace_quantile=ace_quantile),
  )


# ---------------------------------------------------------------------------------------------
# Post-hoc temperature scaling (Guo et al. 2017): logits / T with one scalar T > 0 fitted by NLL.

def _nll_and_grad(log_t: float, logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
  """Mean NLL of softmax(logits / T) and its derivative w.r.t. log T."""
  t = np.exp(log_t)
  z = logits / t
  z = z - z.max(axis=1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  p = np.exp(logp)
  idx = np.arange(len(labels))
  nll = -logp[idx, labels].mean()
  # d nll / d z = p - onehot; d z / d log T = -z_raw / T
  dz = p.copy()
  dz[idx, labels] -= 1
  grad = float(np.mean(np.sum(dz * -(logits / t), axis=1)))
  return float(nll), grad


def fit_temperature(logits, labels, bounds=(1e-2, 1e2)) -> float:
  """The T > 0 minimising the mean NLL of softmax(logits / T) on (logits, labels).

  The NLL is convex in 1/T, so it has a single minimum in log T, found by bisection on the
  derivative within ``bounds`` (a T at a bound means the data push it further: e.g. all
  predictions correct and confident want T -> 0).
  """
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels).astype(np.int64)
  if logits.ndim != 2 or labels.shape != logits.shape[:1] or not len(labels):
    raise ValueError(f"fit_temperature: logits {logits.shape} and labels {labels.shape} must be "
                     "(N, C) and (N,) with N > 0")
  lo, hi = np.log(bounds[0]), np.log(bounds[1])
  if _nll_and_grad(lo, logits, labels)[1] >= 0:
    return float(bounds[0])
  if _nll_and_grad(hi, logits, labels)[1] <= 0:
    return float(bounds[1])
  for _ in range(100):
    mid = 0.5 * (lo + hi)
    if _nll_and_grad(mid, logits, labels)[1] > 0:
      hi = mid
    else:
      lo = mid
  return float(np.exp(0.5 * (lo + hi)))
