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

Multi-label metrics (``targets`` a 0/1 matrix (N, L), ``scores`` real (N, L)):

  * ``multilabel_decisions``: the decision rule that turns scores into 0/1 predictions:
    ``"logit>0"`` / ``"dot>0"`` (predict c iff s_nc > 0; equal to ``sigmoid(s/T) > 0.5`` for any
    temperature T and to the "cosine" rule ``(s_nc/||s_n|| + 1)/2 > 0.5``), or ``"rowminmax@t"``
    (predict c iff (s_nc - min_c s_n) / (max_c s_n - min_c s_n + 1e-8) > t; every row then has
    its argmax positive and its argmin negative).
  * ``label_ranking_average_precision``, ``coverage_error``, ``label_ranking_loss``: sklearn's
    functions of the same names, ties and degenerate rows included. A row with no positive (or
    only positives) scores LRAP 1 and ranking loss 0; its coverage is 0.
  * ``multilabel_prf``: ``precision_recall_fscore_support(average=None, zero_division=0)`` on the
    indicator matrices; macro-F1 = their mean over ALL L labels (sklearn's multi-label label set),
    so a label absent from both truth and prediction adds a 0.
  * ``average_precision``: ``average_precision_score`` of one label (step-wise, no interpolation).

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


# ---------------------------------------------------------------------------------------------
# Multi-label


def _check_multilabel(scores, targets, mask=None) -> tuple[np.ndarray, np.ndarray]:
  """Validates (N, L) scores and 0/1 targets; returns masked float64 scores and bool targets."""
  scores = np.asarray(scores)
  targets = np.asarray(targets)
  if scores.ndim != 2 or targets.shape != scores.shape:
    raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be (N, L)")
  if not np.isin(targets, (0, 1)).all():
    bad = np.argwhere(~np.isin(targets, (0, 1)))[0]
    raise ValueError(f"multi-label targets must be 0/1; found {targets[tuple(bad)].item()!r} at "
                     f"{tuple(int(i) for i in bad)}")
  if mask is not None:
    mask = np.asarray(mask)
    if mask.shape != scores.shape[:1] or mask.dtype != bool:
      raise ValueError(f"mask must be bool of shape {scores.shape[:1]}, got {mask.dtype} "
                       f"{mask.shape}")
    scores, targets = scores[mask], targets[mask]
  nonfinite = np.flatnonzero(~np.isfinite(scores).all(axis=1))
  if nonfinite.size:
    raise ValueError(f"{nonfinite.size} rows of scores are not finite "
                     f"(first: index {nonfinite[0]})")
  if scores.shape[0] == 0:
    raise ValueError("no examples to evaluate (empty input or all-False mask)")
  return scores.astype(np.float64), targets.astype(bool)


ROWMINMAX_EPS = 1e-8


def parse_rule(rule: str) -> tuple[str, float]:
  """``"logit>0"`` | ``"dot>0"`` -> (rule, 0.0); ``"rowminmax@0.5"`` -> ("rowminmax", 0.5)."""
  if rule in ("logit>0", "dot>0"):
    return rule, 0.0
  if rule.startswith("rowminmax@"):
    try:
      t = float(rule[len("rowminmax@"):])
    except ValueError:
      t = float("nan")
    if 0.0 <= t <= 1.0:
      return "rowminmax", t
  raise ValueError(f"unknown decision rule {rule!r}: use 'logit>0', 'dot>0' or 'rowminmax@t' "
                   "with 0 <= t <= 1 (e.g. 'rowminmax@0.5')")


def rowminmax(scores) -> np.ndarray:
  """Per-row min-max scaling (s - min) / (max - min + 1e-8), as the IU-Xray reference does."""
  scores = np.asarray(scores, np.float64)
  lo = scores.min(axis=1, keepdims=True)
  hi = scores.max(axis=1, keepdims=True)
  return (scores - lo) / (hi - lo + ROWMINMAX_EPS)


def multilabel_decisions(scores, rule: str = "logit>0") -> np.ndarray:
  """0/1 predictions (N, L) bool from scores under a decision rule (see the module docstring).

  ``"logit>0"`` and ``"dot>0"`` compute the same thing; the two names record which scores were
  thresholded (a trained head's logits, or raw image-text dot products).
  """
  kind, t = parse_rule(rule)
  scores = np.asarray(scores, np.float64)
  if kind == "rowminmax":
    return rowminmax(scores) > t
  return scores > 0


def _ge_matrix(scores: np.ndarray) -> np.ndarray:
  """ge[n, j, k] = scores[n, k] >= scores[n, j]: label k ranks at or above label j."""
  return scores[:, None, :] >= scores[:, :, None]


def _degenerate_rows(targets: np.ndarray) -> np.ndarray:
  n_pos = targets.sum(axis=1)
  return (n_pos == 0) | (n_pos == targets.shape[1])


def label_ranking_average_precision(scores, targets, mask=None) -> float:
  """sklearn ``label_ranking_average_precision_score``.

  For each positive label j of a row: |{positive k: s_k >= s_j}| / |{k: s_k >= s_j}| (ties count
  against j), averaged over the row's positives, then over rows. Rows with no positive or only
  positives score 1 (the ranking has no meaning there).
  """
  scores, targets = _check_multilabel(scores, targets, mask)
  ge = _ge_matrix(scores)
  rank = ge.sum(axis=2)
  rank_among_pos = (ge & targets[:, None, :]).sum(axis=2)
  ratio = np.where(targets, rank_among_pos / rank, 0.0)
  n_pos = targets.sum(axis=1)
  per_row = np.where(_degenerate_rows(targets), 1.0, ratio.sum(axis=1) / np.maximum(n_pos, 1))
  return float(per_row.mean())


def coverage_error(scores, targets, mask=None) -> float:
  """sklearn ``coverage_error``: how far down the ranking one must go to cover every positive.

  Per row, |{k: s_k >= min over positives of s}| (ties count as covered late); 0 for a row
  without positives. Ranges over 1..L for rows with a positive.
  """
  scores, targets = _check_multilabel(scores, targets, mask)
  min_pos = np.where(targets, scores, np.inf).min(axis=1, keepdims=True)
  per_row = np.where(targets.any(axis=1), (scores >= min_pos).sum(axis=1), 0)
  return float(per_row.mean())


def label_ranking_loss(scores, targets, mask=None) -> float:
  """sklearn ``label_ranking_loss``: fraction of (positive, negative) pairs ordered wrongly.

  A pair is wrong when s_negative >= s_positive (a tie counts as wrong). Rows with no positive or
  no negative contribute 0.
  """
  scores, targets = _check_multilabel(scores, targets, mask)
  wrong = _ge_matrix(scores) & targets[:, :, None] & ~targets[:, None, :]
  n_pos = targets.sum(axis=1)
  pairs = n_pos * (targets.shape[1] - n_pos)
  per_row = np.where(pairs > 0, wrong.sum(axis=(1, 2)) / np.maximum(pairs, 1), 0.0)
  return float(per_row.mean())


def multilabel_prf(predictions, targets) -> dict[str, np.ndarray]:
  """Per-label precision, recall, F1 (zero_division=0), support and predicted counts (L,)."""
  predictions = np.asarray(predictions, bool)
  targets = np.asarray(targets, bool)
  tp = (predictions & targets).sum(axis=0).astype(np.float64)
  n_pred = predictions.sum(axis=0)
  support = targets.sum(axis=0)
  precision = _ratio(tp, n_pred.astype(np.float64))
  recall = _ratio(tp, support.astype(np.float64))
  f1 = _ratio(2 * tp, (n_pred + support).astype(np.float64))
  return dict(precision=precision, recall=recall, f1=f1, support=support, predicted=n_pred)


def average_precision(scores, targets) -> float:
  """sklearn ``average_precision_score`` of one label: sum_k (R_k - R_{k-1}) P_k over distinct
  thresholds in decreasing order. NaN when the label has no positive (sklearn returns 0 and warns).
  """
  scores = np.asarray(scores, np.float64)
  targets = np.asarray(targets, bool)
  n_pos = targets.sum()
  if n_pos == 0:
    return float("nan")
  order = np.argsort(-scores, kind="mergesort")
  s, t = scores[order], targets[order]
  last = np.r_[s[1:] != s[:-1], True]  # the last index of each run of equal scores
  tp = np.cumsum(t)[last].astype(np.float64)
  seen = (np.flatnonzero(last) + 1).astype(np.float64)
  recall = tp / n_pos
  precision = tp / seen
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _binary_prf(pred: np.ndarray, true: np.ndarray) -> dict:
  tp = float((pred & true).sum())
  n_pred, support = int(pred.sum()), int(true.sum())
  precision = tp / n_pred if n_pred else 0.0
  recall = tp / support if support else 0.0
  f1 = 2 * tp / (n_pred + support) if n_pred + support else 0.0
  return dict(precision=precision, recall=recall, f1=f1, support=support, predicted=n_pred)


def _none_if_nan(x: float):
  return None if np.isnan(x) else float(x)


def multilabel_report(logits, targets, classnames: Sequence[str], mask=None,
                      rule: str = "logit>0", domains: dict | None = None) -> dict:
  """All multi-label metrics of one evaluation, as plain JSON-serialisable Python values.

  ``logits`` (N, L) are the scores (a head's logits or raw image-text dot products); ``targets``
  are 0/1 (N, L). Thresholded metrics (per-label P/R/F1, macro-F1, exact match, per-domain) use
  ``rule`` (default ``"logit>0"``; the report records it). Ranking metrics (LRAP, coverage, ranking
  loss, AUROC, AP) use the scores themselves; any per-row increasing map (such as rule A's row
  min-max) leaves them unchanged.

  Undefined values are never NaN: a label with only one class among the targets has no AUROC
  (no positive: also no AP); it gets ``None`` in ``per_label`` and its name in
  ``auroc_undefined``, and ``macro_auroc`` / ``macro_average_precision`` average the defined
  labels only (``None`` when none is defined).

  ``domains`` optionally maps a domain name to member label names: true and predicted are the OR
  over the members (binary P/R/F1, zero_division=0), as the IU-Xray study's per-domain table.
  """
  scores, targets = _check_multilabel(logits, targets, mask)
  if len(classnames) != scores.shape[1]:
    raise ValueError(f"{len(classnames)} classnames for {scores.shape[1]} score columns")
  if len(set(classnames)) != len(classnames):
    raise ValueError(f"classnames are not unique: {list(classnames)}")
  predictions = multilabel_decisions(scores, rule)
  prf = multilabel_prf(predictions, targets)
  auroc = multilabel_auroc(scores, targets)["per_label"]
  ap = np.array([average_precision(scores[:, j], targets[:, j]) for j in range(scores.shape[1])])
  per_label = {
      name: dict(precision=float(prf["precision"][j]), recall=float(prf["recall"][j]),
                 f1=float(prf["f1"][j]), support=int(prf["support"][j]),
                 predicted=int(prf["predicted"][j]), auroc=_none_if_nan(auroc[j]),
                 average_precision=_none_if_nan(ap[j]))
      for j, name in enumerate(classnames)}
  per_domain = {}
  for domain, members in (domains or {}).items():
    missing = [m for m in members if m not in classnames]
    if missing or not members:
      raise ValueError(f"domain {domain!r}: labels {missing or list(members)} are not among the "
                       f"classnames {list(classnames)}")
    cols = [list(classnames).index(m) for m in members]
    per_domain[domain] = _binary_prf(predictions[:, cols].any(axis=1), targets[:, cols].any(axis=1))
  defined_auroc = ~np.isnan(auroc)
  defined_ap = ~np.isnan(ap)
  return dict(
      num_examples=int(scores.shape[0]),
      rule=rule,
      macro_f1=float(prf["f1"].mean()),
      exact_match=float(np.mean((predictions == targets).all(axis=1))),
      lrap=label_ranking_average_precision(scores, targets),
      coverage_error=coverage_error(scores, targets),
      ranking_loss=label_ranking_loss(scores, targets),
      macro_auroc=float(auroc[defined_auroc].mean()) if defined_auroc.any() else None,
      macro_average_precision=float(ap[defined_ap].mean()) if defined_ap.any() else None,
      auroc_undefined=[classnames[j] for j in np.flatnonzero(~defined_auroc)],
      per_label=per_label,
      per_domain=per_domain,
      classnames=list(classnames),
  )
