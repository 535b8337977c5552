"""ProGrad: CoOp whose CE gradient never opposes a teacher's KL gradient.

Reference: ``trainers/ProGrad/prograd_biomedclip.py`` of the BiomedCoOp release (T per dataset,
BTMRI 2.0; lambda 1.0; batch 128, lr 0.002; see configs/prograd.py). Per step, with student
logits s (CoOp's) and teacher logits z:

  L_ce = CE(s, y)    (the data objective of config.loss; cross-entropy by default)
  L_kl = T^2 * mean_b sum_c -softmax(z / T) * log_softmax(s / T)
  g_ce, g_kl = grad L_ce, grad L_kl, per parameter tensor (trainable leaf)
  g = g_ce - lambda * (g_ce . u) u  with u = g_kl / |g_kl|   if cos(g_ce, g_kl) < 0,   else g_ce

The optimizer then applies g (weight decay included there, as Dassl's SGD does after the
reference's projection). So this method supplies its own ``value_and_grad``; ``loss`` is the CE
it descends (the engine logs it), with the KL as an auxiliary metric.

Both gradients go through the same text-tower forward: ``jax.vjp`` of the logits w.r.t. the
trainable leaves runs the forward once, and the two logit-level cotangents are pulled back in one
batched (``vmap``-ed) backward pass. The reference runs a second forward for the teacher and two
separate backward passes.

Teacher (``teacher``):
* "self" (default, the reference's fp32 path): the teacher is the current prompted model itself,
  detached. Then softmax(z / T) = softmax(s / T), so d L_kl / d s = T (softmax(s/T) - softmax(z/T))
  / B is zero and g = g_ce: the update is CoOp's. The reference evaluates that zero in float
  arithmetic, as rounding noise (~1e-8) whose direction decides at random whether its projection
  fires; here it is the exact zero (no projection, and no backward pass spent on it), which equals
  the reference's update whenever its noise does not fire. L_kl (= T^2 * entropy) is still reported.
* "zeroshot" (the ProGrad paper): z = scale * cos(image, t^clip) with t^clip the frozen features of
  the hand-crafted prompts ("a photo of a {}."), encoded once per run in ``prepare``. The teacher's
  image features are the student's: the same frozen image tower on the same pixels.

A zero-norm gradient counts as no conflict, as in the reference (its NaN cosine is not < 0).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from biomedjax.methods import coop, options
from biomedjax.methods.base import Backbone, Task
from biomedjax.methods.zeroshot import encode_prompts
from biomedjax.models.clip import l2_normalize

TEACHERS = ("self", "zeroshot")


@dataclasses.dataclass(frozen=True)
class ProGradOptions(coop.CoOpOptions):
  """CoOp's options plus the teacher and the reference's T = 2.0, lambda = 1.0."""
  teacher: str = "self"     # "self" (reference quirk) | "zeroshot" (ProGrad paper)
  temperature: float = 2.0  # T of the KL term
  lam: float = 1.0          # lambda: how much of the conflicting component is removed


Options = ProGradOptions


def kl_loss(student, teacher, temperature):
  """T^2 * mean_b sum_c -softmax(teacher/T) * log_softmax(student/T) (ProGradLoss)."""
  t = temperature
  q = jax.nn.softmax(teacher / t, axis=-1)
  return t * t * jnp.mean(jnp.sum(-q * jax.nn.log_softmax(student / t, axis=-1), axis=-1))


def project(g_ce, g_kl, lam):
  """One leaf's update: g_ce without lam times its component along g_kl when they conflict."""
  dot = jnp.vdot(g_ce, g_kl)
  norm = jnp.linalg.norm(g_kl)
  unit = g_kl / jnp.where(norm > 0, norm, 1.0)
  projected = g_ce - lam * jnp.vdot(g_ce, unit) * unit
  return jnp.where(dot < 0, projected, g_ce), dot < 0


class ProGrad(coop.CoOp):
  name = "prograd"
  options_type = ProGradOptions
  task_kinds = ("multiclass",)
  kind_note = "its KL term compares softmax distributions"

  def __init__(self, backbone: Backbone, task: Task, opts: ProGradOptions, objective=None):
    if opts.teacher not in TEACHERS:
      raise ValueError(f"prograd: teacher={opts.teacher!r}; use one of {TEACHERS}")
    if not opts.temperature > 0:
      raise ValueError(f"prograd: temperature={opts.temperature!r} must be > 0 (reference 2.0)")
    if not opts.lam >= 0:
      raise ValueError(f"prograd: lam={opts.lam!r} must be >= 0 (reference 1.0)")
    super().__init__(backbone, task, opts, objective)

  def prepare(self, backbone_params) -> dict:
    frozen = super().prepare(backbone_params)
    if self.opts.teacher == "zeroshot":
      clip = encode_prompts(self.backbone, backbone_params, self.task.prompts())
      frozen["clip_text_features"] = clip
    return frozen

  def _logits_fn(self, frozen, features):
    """-> (student logits as a function of the trainable leaves, teacher logits or None)."""
    params = frozen["backbone"]
    img = l2_normalize(features)
    scale = self.backbone.logit_scale(params)

    def student(trainable):
      return scale * img @ self.text_features(trainable, frozen).T

    teacher = None
    if self.opts.teacher == "zeroshot":
      teacher = scale * img @ frozen["clip_text_features"].T
    return student, teacher

  def _ce_and_kl(self, logits, teacher, labels):
    """(L_ce, L_kl) of student logits; teacher None means the student itself, detached."""
    teacher = jax.lax.stop_gradient(logits if teacher is None else teacher)
    ce = self.objective(logits, labels)[0]
    return ce, kl_loss(logits, teacher, self.opts.temperature)

  def loss(self, trainable, frozen, batch, rng):
    student, teacher = self._logits_fn(frozen, batch["features"])
    logits = student(trainable)
    ce, kl = self._ce_and_kl(logits, teacher, batch["label"])
    return ce, {"kl": kl, "accuracy": (logits.argmax(-1) == batch["label"]).mean()}

  def value_and_grad(self, trainable, frozen, batch, rng):
    """((L_ce, aux), projected gradient): the engine's ``value_and_grad`` hook for this method."""
    student, teacher = self._logits_fn(frozen, batch["features"])
    logits, pullback = jax.vjp(student, trainable)
    labels = batch["label"]
    ce, d_ce = jax.value_and_grad(lambda s: self._ce_and_kl(s, teacher, labels)[0])(logits)
    kl, d_kl = jax.value_and_grad(lambda s: self._ce_and_kl(s, teacher, labels)[1])(logits)
    aux = {"kl": kl, "accuracy": (logits.argmax(-1) == labels).mean()}
    if teacher is None:  # "self": d L_kl / d logits is exactly zero, so the update is g_ce
      (g_ce,) = pullback(d_ce)
      return (ce, {**aux, "conflict": jnp.float32(0)}), g_ce
    (g_both,) = jax.vmap(pullback)(jnp.stack([d_ce, d_kl]))  # one batched backward pass
    leaves, treedef = jax.tree.flatten(g_both)
    pairs = [project(g[0], g[1], self.opts.lam) for g in leaves]
    aux["conflict"] = jnp.mean(jnp.stack([c for _, c in pairs]).astype(jnp.float32))
    return (ce, aux), jax.tree.unflatten(treedef, [g for g, _ in pairs])


def build(backbone: Backbone, task: Task, cfg=None, objective=None) -> ProGrad:
  return ProGrad(backbone, task, options.read(ProGradOptions, cfg, "prograd"), objective)
