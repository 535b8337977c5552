"""The reference's linear probe: L2 logistic regression on frozen image features, C searched on val.

BiomedCoOp's LP baseline (``trainers/linear_probe_biomedclip.py`` of its release) fits scikit-learn
``LogisticRegression(solver="lbfgs", penalty="l2", max_iter=1000, C)`` on L2-normalised image
features. This module solves the same problem in numpy, so neither scikit-learn nor scipy is a
runtime dependency:

* **Objective.** ``sum_i CE_i + ||W||^2 / (2C)``, the intercept not penalised. scikit-learn 1.9
  minimises the same function divided by ``C * n`` (mean cross-entropy plus ``||W||^2 / (2Cn)``,
  see ``_logistic_regression_path``); the argmin is the same and we use that scaling too, so
  gradient tolerances mean the same thing.
* **Two classes** are fitted as scikit-learn does: one binary logistic model (a single weight
  vector), not a two-column softmax, because the L2 penalty on a two-column softmax is a different
  regulariser. It is returned as logits ``[0, x.w + b]``, whose softmax is the binary model's
  probability and whose argmax (first index on a tie) is sklearn's ``decision > 0`` rule. This
  matters for base-to-novel BUSI, whose base split has two classes.
* **Solver.** L-BFGS (memory 10) with a backtracking Armijo line search, in float64 (the problem
  is strictly convex, so the curvature condition always holds). It stops at max|grad| <= 1e-10
  or when the objective's relative decrease falls to 64 eps (scipy's ``ftol`` as sklearn sets it),
  within the reference's ``max_iter=1000``; on 16-shot problems that takes ~150 iterations even at
  C = 1e6. The reference keeps sklearn's default ``tol=1e-4``, which stops earlier on the same
  path; we aim at the optimum both approximate (the parity test runs sklearn with ``tol=1e-10``).

**C search, as the reference code does it** (``trainers/linear_probe_biomedclip.py``): fit each C of
the grid ``1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6`` and take the *first* best val accuracy
(``np.argmax``). Then 8 steps on ``[0.1 C*, 10 C*]``: each step fits both ends; if the left end's
val accuracy is strictly lower the right end wins and the interval becomes ``[mid, right]``,
otherwise (ties included) the left end wins and it becomes ``[left, mid]``, with ``mid`` the
midpoint in log10 space. Both ends go through ``10 ** log10(.)`` each step, as in the reference,
so the C values agree to the last bit. The model reported is the winner of the last step.
"""

from __future__ import annotations

import contextlib
import dataclasses

import jax.numpy as jnp
import numpy as np

from biomedjax.methods import options
from biomedjax.methods.base import Method

try:  # Optional: only used to keep BLAS single-threaded, see _single_threaded_blas.
  import threadpoolctl
except ImportError:
  threadpoolctl = None

GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)
BISECTION_STEPS = 8


@dataclasses.dataclass
class LinearProbeResult:
  """The selected ``C``, the classifier ``logits = normalise(x) @ W + b`` and how it was chosen."""
  C: float
  W: np.ndarray            # (dim, num_classes)
  b: np.ndarray            # (num_classes,)
  search_log: list[dict]   # One entry per grid point and per bisection step, in order.
  normalize: bool = True   # Whether features are L2-normalised before ``@ W``.


def l2_normalize(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _check_inputs(feats, labels, name: str, num_classes: int | None = None):
  feats, labels = np.asarray(feats), np.asarray(labels)
  if feats.ndim != 2 or labels.shape != feats.shape[:1]:
    raise ValueError(f"{name}: features {feats.shape} and labels {labels.shape} must be "
                     f"(N, D) and (N,)")
  if not np.isfinite(feats).all():
    raise ValueError(f"{name}: features contain NaN or inf")
  if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
    raise ValueError(f"{name}: labels must be non-negative integers")
  if num_classes is not None and labels.max() >= num_classes:
    raise ValueError(f"{name}: label {labels.max()} but only {num_classes} classes in train")
  return feats, labels


def _objective(params, x1, y_onehot, reg, binary):
  """Mean CE + reg/2 * ||W||^2 (bias row excluded) and its gradient; params (D+1, K or 1)."""
  z = x1 @ params
  logits = np.concatenate([np.zeros_like(z), z], axis=1) if binary else z
  logits = logits - logits.max(axis=1, keepdims=True)
  log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  n = x1.shape[0]
  weights = params[:-1]
  value = -np.sum(y_onehot * log_p) / n + 0.5 * reg * np.sum(weights * weights)
  residual = (np.exp(log_p) - y_onehot) / n
  if binary:
    residual = residual[:, 1:]
  grad = x1.T @ residual
  grad[:-1] += reg * weights
  return value, grad


def _two_loop(grad, s_list, y_list):
  """L-BFGS direction -H g from the stored curvature pairs."""
  q = grad.copy()
  alphas = []
  for s, y in reversed(list(zip(s_list, y_list))):
    alpha = np.sum(s * q) / np.sum(y * s)
    q -= alpha * y
    alphas.append(alpha)
  if s_list:
    q *= np.sum(s_list[-1] * y_list[-1]) / np.sum(y_list[-1] * y_list[-1])
  for (s, y), alpha in zip(zip(s_list, y_list), reversed(alphas)):
    q += (alpha - np.sum(y * q) / np.sum(y * s)) * s
  return -q


def _lbfgs(fun, x, max_iter, gtol, memory=10, ftol=64 * np.finfo(float).eps):
  """Minimises a smooth strictly convex ``fun(x) -> (value, grad)`` from ``x``."""
  value, grad = fun(x)
  s_list, y_list = [], []
  for _ in range(max_iter):
    if np.abs(grad).max() <= gtol:
      break
    direction = _two_loop(grad, s_list, y_list)
    slope = np.sum(grad * direction)
    step = 1.0 if s_list else 1.0 / max(np.abs(grad).sum(), 1.0)
    while True:  # Backtracking until the Armijo condition holds.
      new_value, new_grad = fun(x + step * direction)
      if new_value <= value + 1e-4 * step * slope or step < 1e-20:
        break
      step *= 0.5
    s, y = step * direction, new_grad - grad
    decrease = (value - new_value) / max(abs(value), abs(new_value), 1.0)
    x, value, grad = x + s, new_value, new_grad
    if np.sum(s * y) > 1e-12 * np.sum(y * y):
      s_list, y_list = (s_list + [s])[-memory:], (y_list + [y])[-memory:]
    if decrease <= ftol:
      break
  return x


def _single_threaded_blas():
  """These problems are tiny (a few thousand parameters, ~100 rows): multi-threaded BLAS costs
  more than it gains, ~25x on a busy 2-core machine. A no-op without threadpoolctl."""
  if threadpoolctl is None:
    return contextlib.nullcontext()
  return threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def fit_logistic(feats, labels, C: float, num_classes: int, *, max_iter: int = 1000,
                 gtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
  """L2 logistic regression as sklearn's lbfgs solver defines it; returns (W (D, K), b (K,))."""
  x = np.asarray(feats, np.float64)
  x1 = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
  y_onehot = np.eye(num_classes)[labels]
  binary = num_classes == 2
  params = np.zeros((x1.shape[1], 1 if binary else num_classes))
  reg = 1.0 / (C * x.shape[0])
  with _single_threaded_blas():
    params = _lbfgs(lambda p: _objective(p, x1, y_onehot, reg, binary), params, max_iter, gtol)
  if binary:
    params = np.concatenate([np.zeros_like(params), params], axis=1)
  return params[:-1], params[-1]


def logits(result: LinearProbeResult, feats) -> np.ndarray:
  x = l2_normalize(feats) if result.normalize else np.asarray(feats, np.float64)
  return x @ result.W + result.b


def predict(result: LinearProbeResult, feats) -> np.ndarray:
  """Class ids; ties go to the lowest index (sklearn's argmax / ``decision > 0``)."""
  return logits(result, feats).argmax(axis=1)


def _val_correct(W, b, val_x, val_y) -> int:
  return int(np.sum((val_x @ W + b).argmax(axis=1) == val_y))


def fit_linear_probe(train_feats, train_labels, val_feats, val_labels, *, grid=GRID,
                     steps: int = BISECTION_STEPS, normalize: bool = True,
                     max_iter: int = 1000) -> LinearProbeResult:
  """Selects C on val with the reference's grid + log-space bisection; returns the last winner."""
  train_x, train_y = _check_inputs(train_feats, train_labels, "train")
  num_classes = int(train_y.max()) + 1
  missing = sorted(set(range(num_classes)) - set(train_y.tolist()))
  if missing:
    raise ValueError(f"train: classes {missing} have no examples; labels must cover 0..K-1")
  val_x, val_y = _check_inputs(val_feats, val_labels, "val", num_classes)
  if normalize:
    train_x, val_x = l2_normalize(train_x), l2_normalize(val_x)

  fits = {}  # Bisection refits one end of the previous interval: fits are deterministic in C.

  def fit_and_score(C):
    if C not in fits:
      W, b = fit_logistic(train_x, train_y, C, num_classes, max_iter=max_iter)
      fits[C] = W, b, _val_correct(W, b, val_x, val_y)
    return fits[C]

  log = []
  scores = []
  for C in grid:
    scores.append(fit_and_score(C)[2])
    log.append(dict(stage="grid", C=float(C), val_acc=scores[-1] / val_y.size))
  c_peak = grid[int(np.argmax(scores))]
  left, right = 0.1 * c_peak, 10.0 * c_peak
  for step in range(steps):
    W_l, b_l, correct_l = fit_and_score(left)
    W_r, b_r, correct_r = fit_and_score(right)
    mid = 0.5 * (np.log10(right) + np.log10(left))
    chose_right = correct_l < correct_r
    log.append(dict(stage="bisect", step=step, C_left=float(left), C_right=float(right),
                    val_acc_left=correct_l / val_y.size, val_acc_right=correct_r / val_y.size,
                    chosen="right" if chose_right else "left"))
    C, W, b = (right, W_r, b_r) if chose_right else (left, W_l, b_l)
    lo, hi = (mid, np.log10(right)) if chose_right else (np.log10(left), mid)
    left, right = np.power(10.0, lo), np.power(10.0, hi)
  if steps == 0:
    C = c_peak
    W, b, _ = fit_and_score(C)
  return LinearProbeResult(C=float(C), W=W, b=b, search_log=log, normalize=normalize)


TRAIN_FEATURES = ("augmented", "eval")


@dataclasses.dataclass(frozen=True)
class LinearProbeOptions:
  max_iter: int = 1000  # L-BFGS iterations per fit (sklearn's max_iter in the reference)
  # "augmented": the reference harness (main.py) fits on ONE augmented view of the training set
  # (RandomResizedCrop(scale 0.5-1) + flip); "eval": the eval-transform features instead.
  train_features: str = "augmented"


Options = LinearProbeOptions


class LinearProbe(Method):
  """The linear probe as a training-free method of the engine (``fit`` on cached features).

  Not packed (``packs_runs`` False, runs go one by one): each fit is an L-BFGS solve with a
  data-dependent number of iterations and line-search steps, and the C bisection branches on
  val accuracies, all on the host in float64; there is no fixed-shape program to vmap."""
  name = "linear_probe"
  options_type = LinearProbeOptions
  harness_protocol = True  # BiomedCoOp's adapter harness (its reported std convention)
  inputs = "features"
  stages = ("fit",)

  @property
  def fit_views(self) -> int:
    """Augmented passes the engine encodes for ``fit`` (0: eval-transform features)."""
    if self.opts.train_features not in TRAIN_FEATURES:
      raise ValueError(f"config.method.train_features={self.opts.train_features!r}; expected "
                       f"one of {TRAIN_FEATURES}")
    return 1 if self.opts.train_features == "augmented" else 0

  def fit(self, frozen, train, val, rng=None) -> dict:
    if val is None or len(val.labels) == 0:
      raise ValueError("linear_probe searches C on the val split, which is empty; give the split "
                       "file a non-empty 'val' list")
    feats = np.asarray(train.features)
    feats = feats[0] if feats.ndim == 3 else feats  # one augmented view (fit_views = 1)
    r = fit_linear_probe(feats, train.labels, val.features, val.labels,
                         max_iter=self.opts.max_iter)
    if r.W.shape[1] != self.task.num_classes:
      raise ValueError(f"fitted {r.W.shape[1]} classes, the task has {self.task.num_classes}")
    return {"W": np.asarray(r.W, np.float32), "b": np.asarray(r.b, np.float32),
            "C": np.float32(r.C)}

  def logits(self, trainable, frozen, features):
    x = features / jnp.linalg.norm(features, axis=-1, keepdims=True)
    return x @ trainable["W"] + trainable["b"]


def build(backbone, task, cfg=None, objective=None) -> LinearProbe:
  return LinearProbe(backbone, task, options.read(LinearProbeOptions, cfg, "linear_probe"),
                     objective)
