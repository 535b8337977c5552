"""biomedjax.evaluation.metrics against scikit-learn and torchmetrics on random predictions."""

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from biomedjax.evaluation import metrics

K = 6


def _random_problem(seed, n=200, k=K, never_predicted=(), absent=()):
  """Random logits/labels; classes in ``never_predicted`` never win, ``absent`` never occur."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, k)) * 2.0
  labels = rng.integers(0, k, size=n)
  for c in absent:
    labels[labels == c] = (c + 1) % k
  # Make predictions informative so precision/recall are not all tiny.
  logits[np.arange(n), labels] += rng.uniform(0, 3, size=n)
  for c in never_predicted:
    # Below every other class, but not so low that sklearn's log_loss clipping (eps) kicks in.
    logits[:, c] = np.delete(logits, c, axis=1).min(1) - 1.0
  return logits, labels


CASES = [dict(seed=0), dict(seed=1, never_predicted=(2,)), dict(seed=2, absent=(4,)),
         dict(seed=3, never_predicted=(1, 5), absent=(0,)),
         dict(seed=4, never_predicted=(3,), absent=(3,))]


@pytest.mark.parametrize("case", CASES)
def test_single_label_metrics_equal_sklearn(case):
  logits, labels = _random_problem(**case)
  preds = logits.argmax(1)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # sklearn warns about classes absent from y_true.
    ref_bal = skm.balanced_accuracy_score(labels, preds)
  assert metrics.accuracy(logits, labels) == pytest.approx(skm.accuracy_score(labels, preds),
                                                           abs=1e-12)
  assert metrics.balanced_accuracy(logits, labels) == pytest.approx(ref_bal, abs=1e-12)
  assert metrics.macro_f1(logits, labels) == pytest.approx(
      skm.f1_score(labels, preds, average="macro", zero_division=0), abs=1e-12)
  p, r, f, s = skm.precision_recall_fscore_support(labels, preds, labels=range(K),
                                                   zero_division=0)
  ours = metrics.precision_recall_f1(logits, labels)
  np.testing.assert_allclose(ours["precision"], p, atol=1e-12)
  np.testing.assert_allclose(ours["recall"], r, atol=1e-12)
  np.testing.assert_allclose(ours["f1"], f, atol=1e-12)
  np.testing.assert_array_equal(ours["support"], s)
  np.testing.assert_array_equal(metrics.confusion_matrix(logits, labels),
                                skm.confusion_matrix(labels, preds, labels=range(K)))
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  assert metrics.nll(logits, labels) == pytest.approx(
      skm.log_loss(labels, probs, labels=range(K)), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_equals_torchmetrics(seed):
  torch = pytest.importorskip("torch")
  tm = pytest.importorskip("torchmetrics.classification")
  logits, labels = _random_problem(seed, n=500)
  logits = logits * (0.3 + seed)  # From under- to over-confident.
  probs = metrics.softmax(logits).astype(np.float32)
  ref = tm.MulticlassCalibrationError(num_classes=K, n_bins=15, norm="l1")(
      torch.from_numpy(probs), torch.from_numpy(labels))
  assert metrics.ece(probs, labels) == pytest.approx(float(ref), abs=1e-6)


def test_ece_confidence_one_has_its_own_bin():
  """Hand-computed: confidences 1.0 (correct) and 0.97 (wrong) land in different bins."""
  probs = np.array([[1.0, 0.0], [0.97, 0.03]])
  labels = np.array([0, 1])
  # Bin [14/15, 1): one wrong example at 0.97 -> |0 - 0.97| * 1/2; bin {1.0}: |1 - 1| * 1/2.
  assert metrics.ece(probs, labels) == pytest.approx(0.97 / 2, abs=1e-7)


def test_mask_drops_padding_only():
  logits, labels = _random_problem(5, n=50)
  padded_logits = np.concatenate([logits, np.zeros((14, K))])
  padded_labels = np.concatenate([labels, np.zeros(14, int)])
  mask = np.r_[np.ones(50, bool), np.zeros(14, bool)]
  assert metrics.accuracy(padded_logits, padded_labels, mask) == metrics.accuracy(logits, labels)
  assert metrics.nll(padded_logits, padded_labels, mask) == metrics.nll(logits, labels)


def test_bad_inputs_have_clear_errors():
  logits = np.zeros((3, 4))
  with pytest.raises(ValueError, match="label 7 at .*index 1"):
    metrics.accuracy(logits, np.array([0, 7, 1]))
  with pytest.raises(ValueError, match="shape"):
    metrics.accuracy(logits, np.array([0, 1]))
  logits[2, 1] = np.nan
  with pytest.raises(ValueError, match="not finite.*index 2"):
    metrics.accuracy(logits, np.array([0, 1, 1]))
  with pytest.raises(ValueError, match="probabilities"):
    metrics.ece(np.full((2, 2), 3.0), np.array([0, 1]))


def test_harmonic_mean():
  assert metrics.harmonic_mean(76.26, 73.92) == pytest.approx(
      2 * 76.26 * 73.92 / (76.26 + 73.92))
  assert metrics.harmonic_mean(0.0, 0.0) == 0.0


def test_multilabel_auroc_equals_sklearn():
  rng = np.random.default_rng(0)
  n, n_labels = 120, 5
  targets = (rng.uniform(size=(n, n_labels)) < 0.3).astype(int)
  scores = rng.normal(size=(n, n_labels)) + targets
  scores[:, 1] = np.round(scores[:, 1], 1)  # Ties, counted half by the rank statistic.
  targets[:, 4] = 0  # No positives: AUROC undefined for this label.
  out = metrics.multilabel_auroc(scores, targets)
  ref = [skm.roc_auc_score(targets[:, j], scores[:, j]) for j in range(4)]
  np.testing.assert_allclose(out["per_label"][:4], ref, atol=1e-12)
  assert np.isnan(out["per_label"][4]) and out["undefined"] == [4]
  assert out["macro"] == pytest.approx(skm.roc_auc_score(targets[:, :4], scores[:, :4],
                                                         average="macro"), abs=1e-12)


def test_classification_report_is_json_and_consistent():
  logits, labels = _random_problem(7, never_predicted=(2,))
  names = [f"class {i}" for i in range(K)]
  report = metrics.classification_report(logits, labels, names)
  again = json.loads(json.dumps(report))
  assert again == report
  preds = logits.argmax(1)
  assert report["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
  assert report["per_class"]["class 2"]["precision"] == 0.0
  assert report["num_examples"] == 200
  assert sum(map(sum, report["confusion_matrix"])) == 200
  with pytest.raises(ValueError, match="classnames"):
    metrics.classification_report(logits, labels, names[:-1])
