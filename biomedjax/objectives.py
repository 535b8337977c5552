"""The data term of every training loss, chosen by ``config.loss`` rather than by the method.

``make(loss_cfg, task)`` returns an ``Objective``: ``(logits, labels, **extras) -> (loss,
metrics)``. Methods call it on their logits and add only their own regularisers, so the same
method trains with softmax cross-entropy, label-smoothed cross-entropy or sigmoid BCE by config.

``config.loss`` fields:

* ``data``: "auto" (softmax CE for a multiclass task, sigmoid BCE for a multilabel one),
  "softmax_ce", "sigmoid_bce", or "none": no data term, the objective is the ``terms`` alone
  (multiclass). "none" is how the calibration reference's ``ENABLED_LOSSES`` lists compose: its
  single-loss baselines (``['FL']``, ``['MBLS']``, ``['LOGITNORM']``) REPLACE cross-entropy, and
  ``['LS', 'SMAC', 'AS']`` is the term ``ls`` plus the others
  (``calibration_losses.reference_loss`` builds that config). A softmax objective on a multilabel
  task (or the reverse) is an error naming both.
* ``label_smoothing`` α (softmax CE only) in ``smoothing`` convention:
  "reference" — the calibration reference's: 1 − α on the true class and α / (C − 1) on each
  wrong class; "torch" — ``torch.nn.CrossEntropyLoss(label_smoothing=α)``: (1 − α) one-hot
  + α / C.

* ``terms``: calibration terms added to the data term, "name:weight,..." (e.g.
  "smac:1.0,as:3.0"; a bare name takes the calibration reference's weight), from
  ``biomedjax.calibration_losses.TERMS``: ce, ls, smac, mdca, as, focal, dca, mmce, mbls,
  logitnorm, eccv_penalty, eccv_zs (zs_norm), margin_mean_var, text_moment_matching, or the
  reference's upper-case names (``REFERENCE_NAMES``). LS and SMAC share ``label_smoothing`` as
  their alpha (CalibPrompt: one alpha for LS and SMAC). They are
  softmax quantities: with a multilabel task they are an error.

``extras`` (e.g. ``text_features``) are what a method can offer to terms that need more than
logits: AS reads the (C, D) normalised class text features that prompt methods pass; the ECCV
terms read ``zero_shot_logits`` and TEXT_MOMENT_MATCHING ``zero_shot_text_features``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from biomedjax import calibration_losses

KINDS = ("multiclass", "multilabel")
DATA_TERMS = ("auto", "softmax_ce", "sigmoid_bce", "none")
SMOOTHING = ("reference", "torch")
DEFAULTS = dict(data="auto", label_smoothing=0.0, smoothing="reference", terms="")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean softmax cross-entropy with integer labels, and the batch accuracy for logging."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return ce, (logits.argmax(-1) == labels).mean()


def smoothed_targets(labels: jax.Array, num_classes: int, alpha: float, convention: str):
  """(B,) integer labels -> (B, C) smoothed target distributions (see the module doc)."""
  onehot = jax.nn.one_hot(labels, num_classes)
  if convention == "torch":
    return (1.0 - alpha) * onehot + alpha / num_classes
  return (1.0 - alpha) * onehot + alpha / (num_classes - 1) * (1.0 - onehot)


def sigmoid_bce(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean over all entries of binary cross-entropy with logits (torch ``BCEWithLogitsLoss``)."""
  return optax.sigmoid_binary_cross_entropy(logits, targets.astype(logits.dtype)).mean()


@dataclasses.dataclass(frozen=True)
class Objective:
  """A data term: callable on (logits, labels, **extras) -> (loss, metrics)."""
  data: str                 # "softmax_ce" | "sigmoid_bce" | "none" (resolved, never "auto")
  label_smoothing: float = 0.0
  smoothing: str = "reference"
  terms: tuple[tuple[str, float], ...] = ()   # (name, weight) calibration terms

  def __call__(self, logits, labels, **extras: Any) -> tuple[jax.Array, dict]:
    loss, metrics = self._data(logits, labels)
    if not self.terms:
      return loss, metrics
    extra, parts = calibration_losses.combined(
        self.terms, logits, labels, extras.get("text_features"), self.label_smoothing,
        extras.get("zero_shot_logits"), extras.get("zero_shot_text_features"))
    return loss + extra, {**metrics, "data_loss": loss,
                          **{f"{k}_loss": v for k, v in parts.items()}}

  @property
  def needs_zero_shot(self) -> bool:
    return calibration_losses.needs_zero_shot(self.terms)

  def _data(self, logits, labels) -> tuple[jax.Array, dict]:
    if self.data == "none":
      return jnp.zeros((), logits.dtype), {"accuracy": (logits.argmax(-1) == labels).mean()}
    if self.data == "sigmoid_bce":
      loss = sigmoid_bce(logits, labels)
      exact = jnp.all((logits > 0) == (labels > 0.5), axis=-1).mean()
      return loss, {"exact_match": exact}
    if self.label_smoothing:
      targets = smoothed_targets(labels, logits.shape[-1], self.label_smoothing, self.smoothing)
      loss = optax.softmax_cross_entropy(logits, targets).mean()
      return loss, {"accuracy": (logits.argmax(-1) == labels).mean()}
    loss, accuracy = cross_entropy(logits, labels)
    return loss, {"accuracy": accuracy}


def make(loss_cfg, task) -> Callable:
  """``config.loss`` (a ConfigDict, dict or None) + the task -> its Objective, checked."""
  values = {**DEFAULTS, **(dict(loss_cfg) if loss_cfg is not None else {})}
  unknown = sorted(set(values) - set(DEFAULTS))
  if unknown:
    raise ValueError(f"config.loss: unknown key(s) {unknown}; expected some of {sorted(DEFAULTS)}")
  data = values["data"]
  if data not in DATA_TERMS:
    raise ValueError(f"config.loss.data={data!r}: use one of {DATA_TERMS}")
  if data == "auto":
    data = "sigmoid_bce" if task.kind == "multilabel" else "softmax_ce"
  expected = {"softmax_ce": "multiclass", "sigmoid_bce": "multilabel", "none": "multiclass"}[data]
  if task.kind != expected:
    raise ValueError(f"config.loss.data={data!r} is for {expected} tasks, but this task is "
                     f"{task.kind}; use config.loss.data='auto'")
  alpha, convention = values["label_smoothing"], values["smoothing"]
  if not isinstance(alpha, (int, float)) or not 0.0 <= alpha < 1.0:
    raise ValueError(f"config.loss.label_smoothing={alpha!r}: a number in [0, 1)")
  if convention not in SMOOTHING:
    raise ValueError(f"config.loss.smoothing={convention!r}: use one of {SMOOTHING}")
  if alpha and data == "sigmoid_bce":
    raise ValueError("config.loss.label_smoothing applies to softmax_ce (or the ls/smac terms) "
                     "only")
  if alpha and convention == "reference" and task.num_classes < 2:
    raise ValueError("config.loss.smoothing='reference' needs at least 2 classes")
  terms = calibration_losses.parse_terms(values["terms"])
  calibration_losses.check_task_kind(terms, task.kind)
  if data == "none" and not terms:
    raise ValueError("config.loss.data='none' leaves no loss: give config.loss.terms (e.g. "
                     "'focal' for the reference's ['FL'] baseline)")
  return Objective(data, float(alpha), convention, terms)


def default(task) -> Objective:
  """The objective of ``config.loss`` left at its defaults (plain CE or BCE by task kind)."""
  return make(None, task)
