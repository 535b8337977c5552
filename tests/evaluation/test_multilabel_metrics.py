"""biomedjax.evaluation.metrics multi-label functions against scikit-learn on constructed cases.

The cases quantise scores so that ties are frequent, and include rows with no positive label, rows
with every label positive, a label never present and a label never predicted: the corner cases
where ranking metrics and zero_division handling differ between implementations.
"""

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from biomedjax.evaluation import metrics

L = 7


def _problem(seed, n=60, levels=4):
  """Scores on a coarse grid (many ties) loosely correlated with random multi-hot targets."""
  rng = np.random.default_rng(seed)
  targets = (rng.random((n, L)) < 0.3).astype(np.float32)
  targets[0] = 0                      # all-zero row
  targets[1] = 1                      # all-one row
  targets[2:6] = 0
  targets[2:6, 3] = 1                 # a few single-positive rows
  targets[:, 5] = 0                   # label 5 never present
  targets[1, 5] = 1                   # ... except in the all-one row (keeps row 1 all ones)
  targets[:, 6] = 1                   # label 6 present everywhere except below
  targets[0, 6] = 0
  scores = np.round(rng.normal(size=(n, L)) + 1.5 * targets, 0) / 2 * (levels / 4)
  scores[3] = 0.25                    # a row of all-tied scores with one positive
  scores[:, 4] = -3.0                 # label 4 never predicted under logit>0
  return scores, targets


SEEDS = [0, 1, 2]


@pytest.mark.parametrize("seed", SEEDS)
def test_ranking_metrics_equal_sklearn(seed):
  scores, targets = _problem(seed)
  assert metrics.label_ranking_average_precision(scores, targets) == pytest.approx(
      skm.label_ranking_average_precision_score(targets, scores), abs=1e-12)
  assert metrics.coverage_error(scores, targets) == pytest.approx(
      skm.coverage_error(targets, scores), abs=1e-12)
  assert metrics.label_ranking_loss(scores, targets) == pytest.approx(
      skm.label_ranking_loss(targets, scores), abs=1e-12)


def test_ranking_metrics_by_hand_with_ties_and_empty_rows():
  targets = np.array([[1, 0, 0], [0, 0, 0], [1, 0, 1], [0, 1, 0]])
  scores = np.array([[1.0, 1.0, 1.0], [3.0, 2.0, 1.0], [2.0, 2.0, 0.0], [0.0, 5.0, 1.0]])
  # row 0: positive tied with everything: rank 3, 1 positive at or above -> 1/3; coverage 3;
  #        pairs (0,1), (0,2) both tied -> wrong -> loss 1.
  # row 1: no positive -> LRAP 1, coverage 0, loss 0.
  # row 2: positives 0 (s=2, rank 2: itself and label 1 tied -> 1/2) and 2 (s=0, rank 3, 2
  #        positives at or above -> 2/3); coverage 3; pairs (0,1) tie wrong, (2,1) wrong -> 1.
  # row 3: positive ranked first -> 1; coverage 1; loss 0.
  assert metrics.label_ranking_average_precision(scores, targets) == pytest.approx(
      (1 / 3 + 1 + (1 / 2 + 2 / 3) / 2 + 1) / 4)
  assert metrics.coverage_error(scores, targets) == pytest.approx((3 + 0 + 3 + 1) / 4)
  assert metrics.label_ranking_loss(scores, targets) == pytest.approx((1 + 0 + 1 + 0) / 4)


@pytest.mark.parametrize("rule", ["logit>0", "rowminmax@0.5", "rowminmax@0.2"])
@pytest.mark.parametrize("seed", SEEDS)
def test_report_equals_sklearn(seed, rule):
  scores, targets = _problem(seed)
  names = [f"label {j}" for j in range(L)]
  rep = metrics.multilabel_report(scores, targets, names, rule=rule,
                                  domains={"ab": ["label 0", "label 1"], "e": ["label 4"]})
  json.dumps(rep, allow_nan=False)  # JSON-able, no NaN anywhere
  if rule == "logit>0":
    pred = (scores > 0).astype(int)
  else:
    t = float(rule.split("@")[1])
    lo, hi = scores.min(1, keepdims=True), scores.max(1, keepdims=True)
    pred = ((scores - lo) / (hi - lo + 1e-8) > t).astype(int)
  y = targets.astype(int)
  assert rep["rule"] == rule
  assert rep["num_examples"] == len(y)
  assert rep["exact_match"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    macro = skm.f1_score(y, pred, average="macro", zero_division=0)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, average=None, zero_division=0)
  assert rep["macro_f1"] == pytest.approx(macro, abs=1e-12)
  rows = [rep["per_label"][n] for n in names]
  np.testing.assert_allclose([x["precision"] for x in rows], p, atol=1e-12)
  np.testing.assert_allclose([x["recall"] for x in rows], r, atol=1e-12)
  np.testing.assert_allclose([x["f1"] for x in rows], f, atol=1e-12)
  np.testing.assert_array_equal([x["support"] for x in rows], s)
  np.testing.assert_array_equal([x["predicted"] for x in rows], pred.sum(0))
  assert rep["lrap"] == pytest.approx(skm.label_ranking_average_precision_score(y, scores))
  assert rep["coverage_error"] == pytest.approx(skm.coverage_error(y, scores))
  assert rep["ranking_loss"] == pytest.approx(skm.label_ranking_loss(y, scores))
  # Per-label AUROC / AP: sklearn on the labels where they are defined, None elsewhere.
  aurocs, aps = [], []
  for j, n in enumerate(names):
    single_class = y[:, j].min() == y[:, j].max()
    if single_class:
      assert rows[j]["auroc"] is None and n in rep["auroc_undefined"]
    else:
      aurocs.append(skm.roc_auc_score(y[:, j], scores[:, j]))
      assert rows[j]["auroc"] == pytest.approx(aurocs[-1], abs=1e-12)
    if y[:, j].sum() == 0:
      assert rows[j]["average_precision"] is None
    else:
      aps.append(skm.average_precision_score(y[:, j], scores[:, j]))
      assert rows[j]["average_precision"] == pytest.approx(aps[-1], abs=1e-12)
  assert rep["macro_auroc"] == pytest.approx(np.mean(aurocs), abs=1e-12)
  assert rep["macro_average_precision"] == pytest.approx(np.mean(aps), abs=1e-12)
  # Per domain: OR over members, binary P/R/F1.
  for dom, cols in (("ab", [0, 1]), ("e", [4])):
    dt, dp = y[:, cols].max(1), pred[:, cols].max(1)
    bp, br, bf, _ = skm.precision_recall_fscore_support(dt, dp, average="binary",
                                                        zero_division=0)
    got = rep["per_domain"][dom]
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((bp, br, bf), abs=1e-12)
    assert got["support"] == dt.sum()


def test_single_class_labels_are_reported_without_nan():
  scores, targets = _problem(0)
  targets[0, 6] = 1  # label 6 positive everywhere: no AUROC, but AP is defined (= 1)
  targets[1, 5] = 0  # label 5 never present: neither AUROC nor AP
  names = [str(j) for j in range(L)]
  rep = metrics.multilabel_report(scores, targets, names)
  json.dumps(rep, allow_nan=False)
  assert rep["auroc_undefined"] == ["5", "6"]
  assert rep["per_label"]["6"]["auroc"] is None and rep["per_label"]["5"]["auroc"] is None
  assert rep["per_label"]["6"]["average_precision"] == pytest.approx(1.0)
  assert rep["per_label"]["5"]["average_precision"] is None
  defined = [skm.roc_auc_score(targets[:, j], scores[:, j]) for j in range(5)]
  assert rep["macro_auroc"] == pytest.approx(np.mean(defined), abs=1e-12)
  assert rep["per_label"]["5"]["f1"] == 0.0  # absent and never predicted: 0, still averaged
  assert rep["macro_f1"] == pytest.approx(np.mean([rep["per_label"][n]["f1"] for n in names]))


def test_rowminmax_gives_every_row_a_positive_and_a_negative():
  scores, _ = _problem(1)
  scores[3] = 0.25  # tied row: max - min = 0 -> all zeros -> no positive (only 1e-8 guards 0/0)
  pred = metrics.multilabel_decisions(scores, "rowminmax@0.9")
  varied = np.ptp(scores, axis=1) > 0
  assert pred[varied].any(1).all() and (~pred[varied]).any(1).all()
  assert not pred[3].any()


def test_logit_rule_equals_sigmoid_over_temperature():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(50, 14)) * 5
  probs = 1 / (1 + np.exp(-logits / 80))
  np.testing.assert_array_equal(metrics.multilabel_decisions(logits, "logit>0"), probs > 0.5)
  cos = (logits / np.linalg.norm(logits, axis=1, keepdims=True) + 1) / 2
  np.testing.assert_array_equal(metrics.multilabel_decisions(logits, "dot>0"), cos > 0.5)


def test_mask_selects_rows():
  scores, targets = _problem(2)
  mask = np.arange(len(scores)) % 3 != 0
  names = [str(j) for j in range(L)]
  full = metrics.multilabel_report(scores[mask], targets[mask], names)
  masked = metrics.multilabel_report(scores, targets, names, mask=mask)
  assert full == masked


@pytest.mark.parametrize("kwargs, match", [
    (dict(rule="rowminmax@1.5"), "unknown decision rule 'rowminmax@1.5'"),
    (dict(rule="prob>0.5"), "unknown decision rule"),
    (dict(domains={"d": ["nope"]}), "domain 'd'.*'nope'"),
])
def test_bad_options_are_named(kwargs, match):
  scores, targets = _problem(0)
  with pytest.raises(ValueError, match=match):
    metrics.multilabel_report(scores, targets, [str(j) for j in range(L)], **kwargs)


def test_bad_inputs_are_named():
  scores, targets = _problem(0)
  names = [str(j) for j in range(L)]
  bad = targets.copy()
  bad[4, 2] = -1.0
  with pytest.raises(ValueError, match=r"0/1; found -1.0 at \(4, 2\)"):
    metrics.multilabel_report(scores, bad, names)
  with pytest.raises(ValueError, match="6 classnames for 7"):
    metrics.multilabel_report(scores, targets, names[:-1])
  with pytest.raises(ValueError, match="must both be"):
    metrics.multilabel_report(scores[:, :3], targets, names)
  nan_scores = scores.copy()
  nan_scores[7, 0] = np.nan
  with pytest.raises(ValueError, match="first: index 7"):
    metrics.multilabel_report(nan_scores, targets, names)
