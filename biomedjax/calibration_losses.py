"""Calibration-aware training losses of CalibPrompt's registry, as pure JAX functions.

Transcribed from ``trainers/classification/losses.py`` of ``iabh1shekbasu/CalibPrompt``.
Notation: logits (B, C), integer labels (B,), p = softmax(logits).

* ``label_smoothing``: targets 1 - a on the true class and a/(C-1) on each other class
  (``convention="reference"``); ``"torch"`` is ``F.cross_entropy(label_smoothing=a)``, i.e.
  a/C on every class, target included: a different loss for the same a.
* ``smac``: the batch mean of those targets, s_c = (1-a) n_c + a (1 - n_c)/(C-1) with n_c the
  class frequency in the batch, against the mean predicted probability:
  (1/C) sum_c |mean_b p_bc - s_c|. No binning. a = 0 is MDCA. A class-balanced batch has
  s_c = 1/C for every a.
* ``angular_separation`` (AS): mean off-diagonal cosine of the L2-normalised class text features,
  (1/C) sum_i (1/(C-1)) sum_{j!=i} t_i.t_j. Neither squared nor clamped.
* ``focal``: -(1 - p_y)^gamma log p_y, gamma 3.  ``dca``: |mean confidence - accuracy|.
* ``mmce``: the weighted MMCE of Kumar et al. with kernel exp(-|r - r'|/0.4) (the registry's
  ``MMCE_weighted``), written with masks instead of its data-dependent ``topk`` so it jits; 0
  (with zero gradient) when the batch is all correct or all wrong, as the reference.
* ``mbls``: CE + 0.1 mean relu(max_l - l - 10).  ``logitnorm``: CE on logits/(||logits|| + 1e-7)/T,
  with a norm whose gradient is 0 at an all-zero row (torch's ``norm`` backward; ``jnp.linalg.norm``
  would give NaN there).
* ``ls``: the label-smoothing loss as a registry term (the reference's ``LS``), alpha shared.
* ``eccv_penalty``: mean relu(l - max_zs) + mean relu(min_zs - l), the zero-shot logit range of each
  sample bounding the tuned logits (``ECCV_PENALTY``, losses.py:306).
* ``eccv_zs`` (ZS-Norm): CE on the logits min-max normalised per row, then mapped onto the row's
  zero-shot range (``ECCV_ZS``, losses.py:325).
* ``margin_mean_var``: -0.1 mean(m) + 0.01 Var(m) (population variance) of the margins
  m = l_y - max_{c != y} l_c (``MARGIN_MEAN_VAR``, losses.py:421).
* ``text_moment_matching``: ||mu_t - mu_zs||^2 + ||Cov_t - Cov_zs||_F^2 between the tuned and the
  zero-shot class text features (covariances over classes, divided by C) (losses.py:448).

The zero-shot inputs are what the reference's ``ZeroshotCLIP`` computes with the same frozen
backbone: ``zero_shot_logits`` = exp(logit_scale) cos(image, template text) on the training batch,
``zero_shot_text_features`` the (C, D) normalised template text features
(``trainers/classification/coop.py:421-482``). Methods pass them as objective extras.

Reference names (``ENABLED_LOSSES``) are accepted beside ours: ``REFERENCE_NAMES``.

``TERMS`` maps the ``config.loss.terms`` names to these functions and the reference weights of
its BiomedCLIP config (``configs/trainers/CoOp_BioMedCLIP/
vit_b32_biomedclip_c16_ep50_batch16.yaml``: every weight 1 except MMCE 2 and AS 3;
``train.py``'s DCA weight 15 is overridden there to 1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

SMOOTHING_CONVENTIONS = ("reference", "torch")


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def smoothed_targets(labels, num_classes: int, alpha: float, convention: str = "reference"):
  """(B, C) label-smoothing targets (see the module docstring)."""
  if convention not in SMOOTHING_CONVENTIONS:
    raise ValueError(f"label smoothing convention {convention!r}: use one of "
                     f"{SMOOTHING_CONVENTIONS}")
  onehot = jax.nn.one_hot(labels, num_classes)
  if convention == "torch":
    return onehot * (1 - alpha) + alpha / num_classes
  return onehot * (1 - alpha) + (1 - onehot) * alpha / (num_classes - 1)


def label_smoothing(logits, labels, alpha: float = 0.1, convention: str = "reference"):
  """mean_b sum_c -q_bc log p_bc with smoothed targets q."""
  q = smoothed_targets(labels, logits.shape[-1], alpha, convention)
  return jnp.mean(jnp.sum(-q * jax.nn.log_softmax(logits, axis=-1), axis=-1))


def smac(logits, labels, alpha: float = 0.1):
  """Smoothed accuracy-confidence matching: (1/C) sum_c |mean_b p_bc - s_c|."""
  c = logits.shape[-1]
  n = jax.nn.one_hot(labels, c).mean(axis=0)
  s = n * (1 - alpha) + (1 - n) * (alpha / (c - 1))
  return jnp.mean(jnp.abs(jax.nn.softmax(logits, axis=-1).mean(axis=0) - s))


def mdca(logits, labels):
  return smac(logits, labels, 0.0)


def angular_separation(text_features):
  """Mean off-diagonal cosine of (C, D) L2-normalised class text features."""
  c = text_features.shape[0]
  if c < 2:
    raise ValueError("angular separation needs at least 2 classes")
  sim = text_features @ text_features.T
  off = sim * (1 - jnp.eye(c, dtype=sim.dtype))
  return jnp.mean(off.sum(axis=1) / (c - 1))


def focal(logits, labels, gamma: float = 3.0):
  logpt = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), labels[:, None], axis=1)[:, 0]
  return jnp.mean(-((1 - jnp.exp(logpt)) ** gamma) * logpt)


def dca(logits, labels):
  p = jax.nn.softmax(logits, axis=-1)
  correct = (p.argmax(-1) == labels).astype(p.dtype)
  return jnp.abs(p.max(-1).mean() - correct.mean())


def mmce(logits, labels, width: float = 0.4):
  """Weighted MMCE (the reference's ``MMCE_weighted``) with masks for its top-k selections."""
  p = jax.nn.softmax(logits, axis=-1)
  r = p.max(-1)
  correct = (p.argmax(-1) == labels).astype(p.dtype)
  wrong = 1 - correct
  m, n = correct.sum(), wrong.sum()
  kernel = jnp.exp(-jnp.abs(r[:, None] - r[None, :]) / width)
  a = (1 - r) * correct            # the reference's (1 - correct_prob) over correct samples
  b = r * wrong                    # incorrect_prob over wrong samples
  both = (m > 0) & (n > 0)
  m_s, n_s = jnp.where(both, m, 1.0), jnp.where(both, n, 1.0)
  # torch.mean over a k x k (or k x k') matrix = its sum / (k k'); here k = m, k' = n.
  cc = jnp.sum(kernel * a[:, None] * a[None, :]) / (m_s * m_s)
  ww = jnp.sum(kernel * b[:, None] * b[None, :]) / (n_s * n_s)
  cw = jnp.sum(kernel * a[:, None] * b[None, :]) / (m_s * n_s)
  err = cc / (m * m + 1e-5) + ww / (n * n + 1e-5) - 2 * cw / (m * n + 1e-5)
  value = jnp.sqrt(jnp.where(both, err, 0.0) + 1e-10)
  return jnp.maximum(jnp.where(both, value, 0.0), 0.0)


def mbls(logits, labels, margin: float = 10.0, alpha: float = 0.1):
  diff = logits.max(axis=1, keepdims=True) - logits
  return _ce(logits, labels) + alpha * jnp.mean(jax.nn.relu(diff - margin))


def _safe_norm(x):
  """L2 norm over the last axis whose gradient at 0 is 0, as torch's ``norm`` backward."""
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  nonzero = sq > 0
  return jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)


def logitnorm(logits, labels, temperature: float = 1.0):
  norms = _safe_norm(logits) + 1e-7
  return _ce(logits / norms / temperature, labels)


def _row_pick(x, index):
  """x[b, index[b]] with the gradient on that one entry (torch's ``max(dim)`` / ``min(dim)``)."""
  return jnp.take_along_axis(x, jax.lax.stop_gradient(index)[:, None], axis=1)


def _clamp(x, lo=None, hi=None):
  """torch.clamp: the gradient passes where lo <= x <= hi, bounds included (``lax.clamp``'s
  does not at the bounds, and ZS-Norm's row min and max sit exactly on them)."""
  out = x
  if lo is not None:
    out = jnp.where(x < lo, lo, out)
  if hi is not None:
    out = jnp.where(x > hi, hi, out)
  return out


def eccv_penalty(logits, zero_shot_logits):
  zs = jax.lax.stop_gradient(zero_shot_logits)
  min_zs, max_zs = zs.min(axis=1, keepdims=True), zs.max(axis=1, keepdims=True)
  return jax.nn.relu(logits - max_zs).mean() + jax.nn.relu(min_zs - logits).mean()


def eccv_zs(logits, labels, zero_shot_logits, eps: float = 1e-6):
  """ZS-Norm: CE on the row-normalised logits rescaled to the row's zero-shot range."""
  zs = jax.lax.stop_gradient(zero_shot_logits)
  min_op = _row_pick(logits, logits.argmin(axis=1))
  max_op = _row_pick(logits, logits.argmax(axis=1))
  min_zs, max_zs = zs.min(axis=1, keepdims=True), zs.max(axis=1, keepdims=True)
  norm = _clamp((logits - min_op) / _clamp(max_op - min_op, lo=eps), 0.0, 1.0)
  return _ce(norm * _clamp(max_zs - min_zs, lo=eps) + min_zs, labels)


def margin_mean_var(logits, labels, alpha: float = 0.1, beta: float = 0.01):
  true = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
  others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
  runner_up = _row_pick(logits, others.argmax(axis=1))[:, 0]
  margins = true - runner_up
  return -alpha * margins.mean() + beta * margins.var()


def text_moment_matching(text_features, zero_shot_text_features):
  tuned, frozen = text_features, jax.lax.stop_gradient(zero_shot_text_features)
  n = tuned.shape[0]
  mu_t, mu_f = tuned.mean(axis=0, keepdims=True), frozen.mean(axis=0, keepdims=True)
  ct, cf = tuned - mu_t, frozen - mu_f
  return jnp.sum((mu_t - mu_f) ** 2) + jnp.sum((ct.T @ ct / n - cf.T @ cf / n) ** 2)


@dataclasses.dataclass(frozen=True)
class Term:
  """A loss term: its function, its reference weight and what it reads."""
  fn: Callable
  weight: float
  needs: str = "logits"    # "logits": fn(logits, labels[, alpha]); "text": fn(text_features);
                           # "zs_logits": fn(logits[, labels], zero_shot_logits);
                           # "zs_text": fn(text_features, zero_shot_text_features)
  uses_alpha: bool = False  # LS and SMAC share the label-smoothing alpha of the objective
  uses_labels: bool = True  # eccv_penalty reads no labels


TERMS = {
    "ce": Term(_ce, 1.0),
    "smac": Term(smac, 1.0, uses_alpha=True),
    "mdca": Term(mdca, 1.0),
    "as": Term(angular_separation, 3.0, needs="text"),
    "focal": Term(focal, 1.0),
    "dca": Term(dca, 1.0),
    "mmce": Term(mmce, 2.0),
    "mbls": Term(mbls, 1.0),
    "logitnorm": Term(logitnorm, 1.0),
    "ls": Term(label_smoothing, 1.0, uses_alpha=True),
    "eccv_penalty": Term(eccv_penalty, 1.0, needs="zs_logits", uses_labels=False),
    "eccv_zs": Term(eccv_zs, 1.0, needs="zs_logits"),
    "margin_mean_var": Term(margin_mean_var, 1.0),
    "text_moment_matching": Term(text_moment_matching, 5.0, needs="zs_text"),
}
# The reference's registry names (losses.py ``@LossRegistry.register``) -> ours. Weights: the
# reference yamls' (ECCV_PENALTY 1 there, 10 in train.py:139; TEXT_MOMENT_MATCHING 5, train.py:162).
REFERENCE_NAMES = {
    "CE": "ce", "DCA": "dca", "MDCA": "mdca", "LS": "ls", "FL": "focal", "MMCE": "mmce",
    "AS": "as", "SMAC": "smac", "ECCV_PENALTY": "eccv_penalty", "ECCV_ZS": "eccv_zs",
    "MBLS": "mbls", "LOGITNORM": "logitnorm", "MARGIN_MEAN_VAR": "margin_mean_var",
    "TEXT_MOMENT_MATCHING": "text_moment_matching",
}
ALIASES = {"zs_norm": "eccv_zs", "fl": "focal", "tmm": "text_moment_matching",
           **{k.lower(): v for k, v in REFERENCE_NAMES.items()}}
ZERO_SHOT_NEEDS = ("zs_logits", "zs_text")


def canonical(name: str) -> str:
  """A term name in ours or the reference's spelling (any case) -> ours, or itself if unknown."""
  n = name.strip().lower()
  return ALIASES.get(n, n)


def reference_loss(enabled_losses, alpha: float = 0.1, weights=None) -> dict:
  """``config.loss`` reproducing the reference's ``ENABLED_LOSSES`` list exactly: no data term,
  every listed loss a term at its reference weight (or ``weights[name]``), one alpha for LS and
  SMAC. ``['FL']`` is focal loss alone, not CE + FL (coop.py:262-297 sums the enabled losses only).
  """
  weights = weights or {}
  terms = []
  for name in enabled_losses:
    ours = canonical(name)
    if ours not in TERMS:
      raise ValueError(f"ENABLED_LOSSES: unknown reference loss {name!r}; known: "
                       f"{sorted(REFERENCE_NAMES)}")
    terms.append(f"{ours}:{float(weights.get(name, TERMS[ours].weight))!r}")
  return dict(data="none", label_smoothing=float(alpha), smoothing="reference",
              terms=",".join(terms))


def parse_terms(spec: str, key: str = "config.loss.terms") -> tuple[tuple[str, float], ...]:
  """'smac:1.0,as:3.0' (or 'smac,as' for the reference weights) -> (('smac', 1.0), ('as', 3.0)).

  One clear error per bad entry: an unknown name (listing the known ones), a weight that is not
  a finite number, a name given twice.
  """
  if not isinstance(spec, str):
    raise ValueError(f"{key}={spec!r}: a string like 'smac:1.0,as:3.0'")
  out, seen = [], set()
  for item in spec.split(","):
    item = item.strip()
    if not item:
      continue
    name, sep, weight = item.partition(":")
    name = canonical(name)
    if name not in TERMS:
      raise ValueError(f"{key}: unknown loss term {name!r} in {spec!r}; known: {sorted(TERMS)} "
                       f"(or the reference's {sorted(REFERENCE_NAMES)})")
    if name in seen:
      raise ValueError(f"{key}: loss term {name!r} given twice in {spec!r}")
    seen.add(name)
    if sep:
      try:
        w = float(weight)
      except ValueError:
        raise ValueError(f"{key}: weight {weight.strip()!r} of loss term {name!r} is not a "
                         f"number (write e.g. {name}:1.0)") from None
      if not math.isfinite(w):
        raise ValueError(f"{key}: weight {w} of loss term {name!r} is not finite")
    else:
      w = TERMS[name].weight
    out.append((name, w))
  return tuple(out)


def check_task_kind(terms, kind: str, key: str = "config.loss.terms") -> None:
  """Every term here is defined for single-label softmax outputs only."""
  if terms and kind != "multiclass":
    raise ValueError(f"{key}: calibration loss terms {[n for n, _ in terms]} are defined for "
                     f"single-label (softmax) tasks; this task is {kind!r}. Remove them or "
                     "use a multiclass dataset")


def needs_zero_shot(terms) -> bool:
  """Whether any term reads the zero-shot logits or text features."""
  return any(TERMS[name].needs in ZERO_SHOT_NEEDS for name, _ in terms)


def _need(value, name: str, what: str):
  if value is None:
    raise ValueError(f"loss term {name!r} needs the {what}, and this method does not pass them "
                     "to its objective (CalibPrompt does; other methods: remove the term)")
  return value


def combined(terms, logits, labels, text_features=None, alpha: float = 0.0,
             zero_shot_logits=None, zero_shot_text_features=None):
  """sum_i w_i term_i -> (total, {term name: unweighted value})."""
  total, parts = 0.0, {}
  for name, w in terms:
    term = TERMS[name]
    if term.needs == "text":
      value = term.fn(_need(text_features, name, "class text features"))
    elif term.needs == "zs_text":
      value = term.fn(_need(text_features, name, "class text features"),
                      _need(zero_shot_text_features, name, "zero-shot text features"))
    elif term.needs == "zs_logits":
      zs = _need(zero_shot_logits, name, "zero-shot logits")
      value = term.fn(logits, labels, zs) if term.uses_labels else term.fn(logits, zs)
    elif term.uses_alpha:
      value = term.fn(logits, labels, alpha)
    else:
      value = term.fn(logits, labels)
    parts[name] = value
    total = total + w * value
  return total, parts

