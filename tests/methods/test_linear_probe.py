"""Linear probe vs scikit-learn's LogisticRegression run through the reference's C search."""

import warnings

import numpy as np
import pytest
import threadpoolctl
from sklearn.linear_model import LogisticRegression

from biomedjax.methods import linear_probe as lp


def _clusters(seed, num_classes, dim, shots, val_per_class, test_per_class, separation):
  """Gaussian clusters around random directions; hard enough that val accuracy depends on C."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(num_classes, dim))
  centers = separation * centers / np.linalg.norm(centers, axis=1, keepdims=True)
  centers += rng.normal(size=dim) * 0.5  # A shared offset, as real image features have.

  def make(per_class):
    y = np.repeat(np.arange(num_classes), per_class)
    x = centers[y] + rng.normal(size=(y.size, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y

  return make(shots), make(val_per_class), make(test_per_class)


def _sk_fit(x, y, C):
  """The reference's classifier (solver='lbfgs', L2, max_iter=1000; l1_ratio=0 is sklearn 1.9's
  spelling of penalty='l2'), with tol tightened from 1e-4 to 1e-10: at C=1e6 the objective is so
  flat that a loose tolerance stops anywhere along the way, and we compare optima, not stopping
  points. (Both solvers then stop on their relative-decrease test after ~150 iterations.)"""
  with warnings.catch_warnings(), threadpoolctl.threadpool_limits(1, user_api="blas"):
    warnings.simplefilter("ignore")  # ConvergenceWarning, should it happen.
    return LogisticRegression(solver="lbfgs", l1_ratio=0, C=C, max_iter=1000,
                              tol=1e-10).fit(x, y)


def _sk_protocol(train, val):
  """The reference's C search (trainers/linear_probe_biomedclip.py) written independently:
  grid, first best, 8 log-space bisection steps."""
  x, y = train[0].astype(np.float64), train[1]
  vx, vy = val[0].astype(np.float64), val[1]
  grid = [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6]
  grid_acc = [np.mean(_sk_fit(x, y, c).predict(vx) == vy) for c in grid]
  best = grid[grid_acc.index(max(grid_acc))]
  lo, hi = np.log10(best / 10), np.log10(best * 10)
  path = []
  for _ in range(8):
    c_lo, c_hi = 10.0 ** lo, 10.0 ** hi
    clf_lo, clf_hi = _sk_fit(x, y, c_lo), _sk_fit(x, y, c_hi)
    acc_lo, acc_hi = np.mean(clf_lo.predict(vx) == vy), np.mean(clf_hi.predict(vx) == vy)
    mid = (lo + hi) / 2
    if acc_hi > acc_lo:
      chosen, c_chosen, lo = clf_hi, c_hi, mid
    else:
      chosen, c_chosen, hi = clf_lo, c_lo, mid
    path.append((acc_lo, acc_hi))
  return c_chosen, chosen, grid_acc, path


@pytest.mark.parametrize("num_classes,dim,separation,seed", [
    (4, 64, 2.0, 0),
    (8, 512, 3.5, 1),
    (2, 64, 1.5, 2),  # Two classes: sklearn's binary model, as base-to-novel BUSI needs.
])
def test_matches_sklearn_protocol(num_classes, dim, separation, seed):
  train, val, test = _clusters(seed, num_classes, dim, shots=16, val_per_class=12,
                               test_per_class=40, separation=separation)
  ours = lp.fit_linear_probe(*train, *val)
  ref_c, ref_clf, ref_grid_acc, ref_path = _sk_protocol(train, val)

  grid_log = [e for e in ours.search_log if e["stage"] == "grid"]
  bisect_log = [e for e in ours.search_log if e["stage"] == "bisect"]
  np.testing.assert_allclose([e["val_acc"] for e in grid_log], ref_grid_acc, atol=1e-12)
  np.testing.assert_allclose([(e["val_acc_left"], e["val_acc_right"]) for e in bisect_log],
                             ref_path, atol=1e-12)
  assert len(set(ref_grid_acc)) > 1  # The search has something to choose; otherwise vacuous.
  assert ours.C == pytest.approx(ref_c, rel=1e-12)

  test_x = test[0].astype(np.float64)
  np.testing.assert_array_equal(lp.predict(ours, test[0]), ref_clf.predict(test_x))
  ours_acc = np.mean(lp.predict(ours, test[0]) == test[1])
  assert ours_acc == np.mean(ref_clf.predict(test_x) == test[1])

  ref_w = ref_clf.coef_.T
  ref_b = ref_clf.intercept_
  if num_classes == 2:  # sklearn's single binary weight vector is our second logit column.
    ref_w = np.concatenate([np.zeros_like(ref_w), ref_w], axis=1)
    ref_b = np.r_[0.0, ref_b]
  # Unit of both: a logit per unit-norm feature. W agrees to 1e-5 of it. The unpenalised
  # intercept is fixed less sharply when C is tiny: f ~ log K barely moves with b, and both
  # solvers stop once f's relative decrease is below 64 eps (scipy's ftol, copied by ours).
  scale = np.abs(ref_w).max()
  np.testing.assert_allclose(ours.W, ref_w, atol=1e-5 * scale)
  np.testing.assert_allclose(ours.b, ref_b, atol=1e-3 * scale)


def test_ties_go_to_first_grid_point_and_left_end():
  """Perfectly separated data: every C scores 100%, so C* = 1e6 and each step keeps the left end."""
  train, val, _ = _clusters(3, 3, 16, shots=8, val_per_class=4, test_per_class=1,
                            separation=30.0)
  result = lp.fit_linear_probe(*train, *val)
  assert [e["C"] for e in result.search_log[:7]] == list(lp.GRID)
  assert all(e["chosen"] == "left" for e in result.search_log[7:])
  assert result.C == pytest.approx(1e5, rel=1e-12)


def test_bad_inputs():
  x = np.random.default_rng(0).normal(size=(6, 4))
  with pytest.raises(ValueError, match=r"classes \[1\]"):
    lp.fit_linear_probe(x, np.array([0, 0, 2, 2, 0, 2]), x, np.zeros(6, int))
  with pytest.raises(ValueError, match="val: label 3"):
    lp.fit_linear_probe(x, np.array([0, 1, 2, 0, 1, 2]), x, np.array([3, 0, 0, 0, 0, 0]))
  bad = x.copy()
  bad[1, 2] = np.nan
  with pytest.raises(ValueError, match="train: features contain NaN"):
    lp.fit_linear_probe(bad, np.array([0, 1, 2, 0, 1, 2]), x, np.zeros(6, int))
