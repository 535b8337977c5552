"""biomedjax.evaluation.calibration against transcriptions of CalibPrompt's metric code.

The ``ref_*`` functions transcribe ``tools/metrics.py`` / ``evaluators/vl_evaluator.py`` of
``iabh1shekbasu/CalibPrompt`` with numpy, scikit-learn and torch (its pandas ``groupby`` is
written as a loop over the groups present). The cases are built to hit the quirks: confidences of
exactly 1.0, ties, empty bins, 2 and 3 classes, a class never predicted.
"""

import warnings

import numpy as np
import pytest
from scipy import optimize
from sklearn.preprocessing import KBinsDiscretizer

from biomedjax.evaluation import calibration as cal


def ref_ece(conf, pred, gt, n=10):
  bins = np.linspace(0, 1, n + 1)
  idx = np.digitize(conf, bins) - 1
  acc, cf = [], []
  for i in range(n):
    m = idx == i
    acc.append(np.mean(gt[m] == pred[m]) if m.sum() else 0)
    cf.append(np.mean(conf[m]) if m.sum() else 0)
  w = np.histogram(conf, bins)[0] / len(conf)
  return np.sum(w * np.abs(np.array(cf) - np.array(acc)))


def _groupby(bins, conf, correct):
  """pandas ``df.groupby(bin)[...]``: mean correct, mean conf, count per present group."""
  keys = np.unique(bins)
  return (np.array([correct[bins == k].mean() for k in keys]),
          np.array([conf[bins == k].mean() for k in keys]),
          np.array([(bins == k).sum() for k in keys]))


def ref_mce(conf, pred, gt, n=10):
  bins = np.array([np.digitize(x, np.linspace(0, 1, n + 1)[1:-1]) for x in conf])
  a, c, k = _groupby(bins, conf, (pred == gt).astype(int))
  return (np.abs(a - c) * k / len(conf)).max()


def ref_ace(conf, pred, gt, n=10, method="linear"):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # merged bins / constant feature
    bins = KBinsDiscretizer(n_bins=n, encode="ordinal", strategy="quantile",
                            quantile_method=method).fit_transform(conf[:, None])[:, 0]
  a, c, k = _groupby(bins, conf, (pred == gt).astype(int))
  return (np.abs(a - c) * k / len(conf)).sum()


def ref_ece_kde(conf, pred, gt):
  torch = pytest.importorskip("torch")
  conf = torch.tensor(conf, dtype=torch.float32)
  acc = (torch.tensor(pred) == torch.tensor(gt)).float()
  n = len(conf)
  bw = 0.3 if n < 100 else 0.2 if n < 500 else 0.1 if n < 2000 else 0.05
  diff = conf.unsqueeze(1) - conf.unsqueeze(1).T
  kernel = torch.exp(-(diff ** 2) / (2 * bw ** 2))
  kernel.fill_diagonal_(0)
  kernel = kernel / torch.clamp(kernel.sum(dim=1, keepdim=True), min=1e-10)
  return torch.mean(torch.abs(conf - kernel @ acc)).item()


def ref_softmax_conf(logits):
  from scipy.special import softmax
  p = softmax(np.asarray(logits, np.float64), axis=1)
  pred = np.argmax(p, axis=1)
  return p[range(p.shape[0]), pred], pred


def _case(seed, n, k, n_ones=0, ties=0, peaked=False):
  """Logits with ``n_ones`` rows of confidence exactly 1.0 and ``ties`` repeated rows."""
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(n, k)) * (4.0 if peaked else 1.5)
  labels = rng.integers(0, k, size=n)
  logits[np.arange(n), labels] += rng.uniform(0, 2, size=n)
  logits[:n_ones] = 0.0
  logits[:n_ones, 0] = 200.0                                # softmax = 1.0 exactly (float64)
  if ties:
    logits[n_ones:n_ones + ties] = logits[n_ones]
  return logits, labels


CASES = {
    "2cls_ones_ties": _case(0, 40, 2, n_ones=5, ties=6),
    "3cls_ones": _case(1, 57, 3, n_ones=3, peaked=True),
    "3cls_ties_empty_bins": _case(2, 30, 3, ties=10),
    "2cls_many": _case(3, 250, 2, n_ones=20, peaked=True),
    "3cls_all_ones": (np.tile([[300.0, 0.0, 0.0]], (12, 1)), np.r_[np.zeros(9), np.ones(3)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_metrics_match_reference(name):
  logits, labels = CASES[name]
  labels = labels.astype(int)
  conf, pred = cal.confidences(logits)
  rconf, rpred = ref_softmax_conf(logits)
  np.testing.assert_array_equal(pred, rpred)
  np.testing.assert_allclose(conf, rconf, rtol=0, atol=1e-15)
  correct = pred == labels
  assert cal.ece(conf, correct) == pytest.approx(100 * ref_ece(rconf, rpred, labels), abs=1e-10)
  assert cal.mce(conf, correct) == pytest.approx(100 * ref_mce(rconf, rpred, labels), abs=1e-10)
  assert cal.ace(conf, correct) == pytest.approx(100 * ref_ace(rconf, rpred, labels), abs=1e-10)
  assert cal.ace(conf, correct, quantile="averaged_inverted_cdf") == pytest.approx(
      100 * ref_ace(rconf, rpred, labels, method="averaged_inverted_cdf"), abs=1e-10)
  assert cal.ece_kde(conf, correct) == pytest.approx(100 * ref_ece_kde(rconf, rpred, labels),
                                                     abs=2e-4)
  report = cal.calibration_report(logits, labels, ("a", "b", "c")[:logits.shape[1]])
  per = report["per_class_ece"]
  for c in np.unique(labels):
    name_c = "abc"[c]
    sel = labels == c
    assert per["gt"][name_c] == pytest.approx(100 * ref_ece(rconf[sel], rpred[sel], labels[sel]))
    sel = rpred == c
    expected = 100 * ref_ece(rconf[sel], rpred[sel], labels[sel]) if sel.any() else None
    assert per["pred"][name_c] == pytest.approx(expected)


def test_confidence_one_is_weighted_but_not_binned():
  """The reference quirk in numbers: conf 1.0 counts in bin 9's weight only."""
  conf = np.array([1.0, 1.0, 0.95, 0.95])
  correct = np.array([0.0, 0.0, 1.0, 1.0])
  # reference: bin 9 holds the two 0.95 (acc 1); weight 4/4 -> |0.95 - 1| = 0.05
  assert cal.ece(conf, correct) == pytest.approx(5.0)
  # standard: bin 9 holds all four: acc 0.5, conf 0.975 -> 47.5
  assert cal.ece(conf, correct, mode="standard") == pytest.approx(47.5)
  # MCE puts 1.0 in the last bin in both modes: gap 0.475, mass 1
  assert cal.mce(conf, correct) == pytest.approx(47.5)
  assert cal.mce(np.r_[conf, 0.15], np.r_[correct, 1.0], mode="standard") == pytest.approx(85.0)
  assert cal.mce(np.r_[conf, 0.15], np.r_[correct, 1.0]) == pytest.approx(
      100 * max(0.475 * 4 / 5, 0.85 / 5))


def test_ties_merge_ace_bins():
  conf = np.r_[np.full(8, 0.9), np.linspace(0.5, 0.6, 4)]
  assert len(np.unique(cal.quantile_bins(conf))) < 10
  assert cal.quantile_bins(np.full(5, 0.7)).tolist() == [0] * 5


def test_bad_modes_and_inputs():
  with pytest.raises(ValueError, match="ECE mode"):
    cal.ece([0.5], [1], mode="torch")
  with pytest.raises(ValueError, match="MCE mode"):
    cal.mce([0.5], [1], mode="x")
  with pytest.raises(ValueError, match="quantile"):
    cal.ace([0.5, 0.6], [1, 0], quantile="nearest")
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    cal.ece([1.5], [1])


def test_fit_temperature_minimises_nll():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(300, 3)) * 6                       # over-confident
  labels = np.where(rng.uniform(size=300) < 0.6, logits.argmax(1), rng.integers(0, 3, 300))

  def nll(log_t):
    return cal._nll_and_grad(log_t, logits, labels)[0]

  t = cal.fit_temperature(logits, labels)
  best = optimize.minimize_scalar(nll, bounds=(np.log(1e-2), np.log(1e2)), method="bounded",
                                  options=dict(xatol=1e-10))
  assert t == pytest.approx(np.exp(best.x), rel=1e-4)
  assert t > 1  # over-confident logits are softened
  # The analytic derivative is the numerical one.
  eps = 1e-6
  num = (nll(np.log(t) + eps) - nll(np.log(t) - eps)) / (2 * eps)
  assert cal._nll_and_grad(np.log(t), logits, labels)[1] == pytest.approx(num, abs=1e-6)
  perfect = np.eye(3)[labels] * 5
  assert cal.fit_temperature(perfect, labels) == pytest.approx(1e-2)


def test_reliability_diagrams_written(tmp_path):
  from biomedjax.evaluation import reliability
  logits, labels = CASES["3cls_ones"]
  labels = labels.copy()
  labels[labels == 2] = 1                             # class 2 absent: no per-class views
  paths = reliability.write_diagrams(logits, labels, ("covid", "lung/opacity", "normal"),
                                     tmp_path, prefix="test")
  names = sorted(p.name for p in paths)
  assert names == sorted(["test_overall.png", "test_gt_covid.png", "test_pred_covid.png",
                          "test_gt_lung_opacity.png", "test_pred_lung_opacity.png"])
  for p in paths:
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
  with pytest.raises(ValueError, match="gap"):
    reliability.plot([0.5], [1], tmp_path / "x.png", "x", gap="center")
