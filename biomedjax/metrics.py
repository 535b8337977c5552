"""Classification metrics as pure numpy functions, defined as scikit-learn and torchmetrics do.

Papers in this field report numbers computed with scikit-learn (accuracy, macro-F1, ...) and
torchmetrics (ECE). Reproducing their definitions exactly, including the corner cases, is what makes
our tables comparable, so each function states the reference it matches:

  * ``accuracy``: ``sklearn.metrics.accuracy_score`` on ``argmax(scores)``.
  * ``balanced_accuracy``: ``balanced_accuracy_score``: mean recall over the classes that occur in
    ``labels`` (a class only predicted, never present, is not averaged in).
  * ``precision_recall_f1``: ``precision_recall_fscore_support(labels=range(K), zero_division=0)``:
    a 0/0 precision (class never predicted) or recall (class absent) is 0, never NaN.
  * ``macro_f1``: ``f1_score(average='macro', zero_division=0)`` with sklearn's default label set:
    the classes present in ``labels`` or in the predictions. A class absent from both is not
    averaged in (it would add an arbitrary 0).
  * ``confusion_matrix``: rows are true classes, columns predicted classes (sklearn).
  * ``nll``: mean negative log-likelihood (``log_loss``), computed from logits with a stable
    log-softmax rather than from clipped probabilities.
  * ``ece``: torchmetrics ``MulticlassCalibrationError(n_bins=15, norm='l1')``: top-1 confidence,
    15 equal-width bins closed on the left, ``sum_b |acc_b - conf_b| * n_b / n``. Like torchmetrics,
    a confidence of exactly 1.0 falls in a 16th bin of its own.
  * ``multilabel_auroc``: ``roc_auc_score`` per label (rank statistic, ties counted half).

Every function takes ``(scores, labels, mask=None)``: ``scores`` are logits or probabilities of
shape (N, K) (only their argmax matters, except for ``nll``/``ece``, which say which they need),
``labels`` integer class ids (N,), and ``mask`` an optional boolean (N,) that marks the real
examples of a padded evaluation batch. Accuracies are fractions in [0, 1], not percentages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ECE_BINS = 15


def _check(scores, labels, mask=None) -> tuple[np.ndarray, np.ndarray]:
  """Validates shapes, label range and finiteness; returns the masked (scores, labels)."""
  scores = np.asarray(scores)
  labels = np.asarray(labels)
  if scores.ndim != 2:
    raise ValueError(f"scores must be (N, num_classes), got shape {scores.shape}")
  if labels.shape != scores.shape[:1]:
    raise ValueError(f"labels shape {labels.shape} does not match scores shape {scores.shape}")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
  if mask is not None:
    mask = np.asarray(mask)
    if mask.shape != labels.shape or mask.dtype != bool:
      raise ValueError(f"mask must be bool of shape {labels.shape}, got {mask.dtype} {mask.shape}")
    scores, labels = scores[mask], labels[mask]
  bad = np.flatnonzero((labels < 0) | (labels >= scores.shape[1]))
  if bad.size:
    raise ValueError(f"label {labels[bad[0]]} at (masked) index {bad[0]} is outside "
                     f"[0, {scores.shape[1]})")
  nonfinite = np.flatnonzero(~np.isfinite(scores).all(axis=1))
  if nonfinite.size:
    raise ValueError(f"{nonfinite.size} rows of scores are not finite "
                     f"(first: index {nonfinite[0]})")
  if labels.size == 0:
    raise ValueError("no examples to evaluate (empty input or all-False mask)")
  return scores, labels


def log_softmax(logits: np.ndarray) -> np.ndarray:
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
  return np.exp(log_softmax(logits))


def accuracy(scores, labels, mask=None) -> float:
  scores, labels = _check(scores, labels, mask)
  return float(np.mean(scores.argmax(axis=1) == labels))


def confusion_matrix(scores, labels, mask=None) -> np.ndarray:
  """(K, K) int64 counts; entry [i, j] = examples of true class i predicted as j."""
  scores, labels = _check(scores, labels, mask)
  k = scores.shape[1]
  flat = labels * k + scores.argmax(axis=1)
  return np.bincount(flat, minlength=k * k).reshape(k, k)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """num / den with 0 where den == 0 (sklearn's zero_division=0)."""
  return np.divide(num, den, out=np.zeros(num.shape, np.float64), where=den > 0)


def _prf_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  tp = np.diag(cm).astype(np.float64)
  precision = _ratio(tp, cm.sum(axis=0))
  recall = _ratio(tp, cm.sum(axis=1))
  f1 = _ratio(2 * precision * recall, precision + recall)
  return precision, recall, f1


def precision_recall_f1(scores, labels, mask=None) -> dict[str, np.ndarray]:
  """Per-class arrays of length K: precision, recall, f1 (zero_division=0) and support."""
  cm = confusion_matrix(scores, labels, mask)
  precision, recall, f1 = _prf_from_confusion(cm)
  return dict(precision=precision, recall=recall, f1=f1, support=cm.sum(axis=1))


def macro_f1(scores, labels, mask=None) -> float:
  cm = confusion_matrix(scores, labels, mask)
  _, _, f1 = _prf_from_confusion(cm)
  seen = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
  return float(f1[seen].mean())


def balanced_accuracy(scores, labels, mask=None) -> float:
  cm = confusion_matrix(scores, labels, mask)
  support = cm.sum(axis=1)
  present = support > 0
  return float(np.mean(np.diag(cm)[present] / support[present]))


def nll(logits, labels, mask=None) -> float:
  """Mean cross-entropy of softmax(logits); takes logits, not probabilities."""
  logits, labels = _check(logits, labels, mask)
  return float(-np.mean(log_softmax(logits)[np.arange(labels.size), labels]))


def ece(probs, labels, mask=None, n_bins: int = ECE_BINS) -> float:
  """Expected calibration error (L1) of the top-1 confidence; takes probabilities."""
  probs, labels = _check(probs, labels, mask)
  if probs.min() < 0 or probs.max() > 1:
    raise ValueError("ece needs probabilities in [0, 1]; apply softmax to logits first")
  # torchmetrics bins in float32: same boundaries and confidences keep edge cases identical.
  confidence = probs.max(axis=1).astype(np.float32)
  correct = (probs.argmax(axis=1) == labels).astype(np.float64)
  boundaries = np.linspace(0, 1, n_bins + 1, dtype=np.float32)
  bins = np.searchsorted(boundaries, confidence, side="right") - 1
  count = np.bincount(bins, minlength=n_bins + 1)
  conf_sum = np.bincount(bins, weights=confidence.astype(np.float64), minlength=n_bins + 1)
  acc_sum = np.bincount(bins, weights=correct, minlength=n_bins + 1)
  gap = np.abs(_ratio(acc_sum, count) - _ratio(conf_sum, count))
  return float(np.sum(gap * count / count.sum()))


def harmonic_mean(base: float, novel: float) -> float:
  """Base-to-novel harmonic mean 2bn/(b+n); 0 when both are 0."""
  return 0.0 if base + novel == 0 else 2.0 * base * novel / (base + novel)


def binary_auroc(scores, targets) -> float:
  """Area under the ROC curve of one binary label; NaN when only one class is present."""
  scores = np.asarray(scores, np.float64)
  targets = np.asarray(targets).astype(bool)
  n_pos, n_neg = targets.sum(), (~targets).sum()
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  order = np.argsort(scores, kind="mergesort")
  sorted_scores = scores[order]
  ranks = np.empty(scores.size, np.float64)
  # Average ranks over ties: each run of equal scores gets the mean of its 1-based positions.
  starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
  ends = np.r_[starts[1:], scores.size]
  ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
  return float((ranks[targets].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def multilabel_auroc(scores, targets, mask=None) -> dict:
  """Per-label AUROC and their macro mean for multi-label tasks (e.g. chest X-ray findings).

  ``targets`` is (N, L) of 0/1. A label with only positives or only negatives has no AUROC; it is
  reported as NaN in ``per_label``, listed in ``undefined``, and left out of ``macro`` (sklearn
  would raise instead). Returns dict(per_label, macro, undefined).
  """
  scores, targets = np.asarray(scores), np.asarray(targets)
  if scores.ndim != 2 or scores.shape != targets.shape:
    raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be (N, L)")
  if not np.isin(targets, (0, 1)).all():
    raise ValueError("multi-label targets must be 0/1")
  if mask is not None:
    scores, targets = scores[np.asarray(mask, bool)], targets[np.asarray(mask, bool)]
  per_label = np.array([binary_auroc(scores[:, j], targets[:, j])
                        for j in range(scores.shape[1])])
  defined = ~np.isnan(per_label)
  macro = float(per_label[defined].mean()) if defined.any() else float("nan")
  return dict(per_label=per_label, macro=macro, undefined=np.flatnonzero(~defined).tolist())


def classification_report(logits, labels, classnames: Sequence[str], mask=None) -> dict:
  """All single-label metrics of one evaluation, as plain JSON-serialisable Python values."""
  logits, labels = _check(logits, labels, mask)
  if len(classnames) != logits.shape[1]:
    raise ValueError(f"{len(classnames)} classnames for {logits.shape[1]} logit columns")
  if len(set(classnames)) != len(classnames):
    raise ValueError(f"classnames are not unique: {list(classnames)}")
  per_class = precision_recall_f1(logits, labels)
  per_class_rows = {
      name: dict(precision=float(per_class["precision"][i]), recall=float(per_class["recall"][i]),
                 f1=float(per_class["f1"][i]), support=int(per_class["support"][i]))
      for i, name in enumerate(classnames)}
  return dict(
      num_examples=int(labels.size),
      accuracy=accuracy(logits, labels),
      balanced_accuracy=balanced_accuracy(logits, labels),
      macro_f1=macro_f1(logits, labels),
      nll=nll(logits, labels),
      ece=ece(softmax(logits), labels),
      per_class=per_class_rows,
      classnames=list(classnames),
      confusion_matrix=confusion_matrix(logits, labels).tolist(),
  )
