"""The compiled functions of a run: one train step for every method, and feature extraction.

The step is a pure function ``(trainable, opt_state, tower, frozen, batch, rng, step) ->
(trainable, opt_state, tower, metrics)``, jitted once. ``trainable`` and ``opt_state`` are donated
(updated in place); ``frozen`` (the backbone and the method's constants) is an *argument*, so 196M
weights are never baked into the program, is wrapped in ``stop_gradient`` and is never donated.
``tower`` is the frozen tower's mutable state (BatchNorm running statistics of a tower the
reference trains through in train mode, ``biomedjax/train/tower.py``; ``{}`` otherwise): run
state, updated by the step, never differentiated and not in the optimizer's pytree.
Gradients are taken with respect to ``trainable`` only, through the method's declared
``value_and_grad`` hook.

For a method with ``inputs="features"`` the step itself runs the frozen image tower on the
(augmented, uint8) batch and hands the method ``batch["features"]``: the same arithmetic as a
method calling the tower, but no method repeats that code, and the engine can feed
precomputed features instead (``data.views``: the batch then holds ``"features"`` already).
A ``"pixels"`` method receives the images in [0, 1].
"""

from __future__ import annotations

import jax
import optax

from biomedjax.methods.base import Backbone, Method, unit_range
from biomedjax.train import sharding, tower as tower_lib


def method_batch(method: Method, backbone: Backbone, backbone_params, batch: dict) -> dict:
  """The batch a method sees: uint8 images -> features (frozen tower) or [0, 1] floats.

  A batch that already holds ``"features"`` (a precomputed view stream,
  ``biomedjax/train/view_stream.py``) is passed through: the tower ran when it was encoded."""
  if method.inputs == "features" and "features" in batch:
    return batch
  if method.inputs == "features":
    return {**batch, "features": backbone.image_features(backbone_params, batch["image"])}
  return {**batch, "image": unit_range(batch["image"])}


def apply_step(method: Method, tx: optax.GradientTransformation, trainable, opt_state, frozen,
               batch: dict, rng):
  """One gradient step on a method batch: -> (trainable, opt_state, metrics). The body of the
  train step, also vmapped over the points of a packed sweep (``biomedjax.train.packed``)."""
  (loss, aux), grads = method.value_and_grad(trainable, frozen, batch, rng)
  updates, opt_state = tx.update(grads, opt_state, trainable)
  trainable = optax.apply_updates(trainable, updates)
  metrics = {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads),
             "update_norm": optax.tree.norm(updates)}
  return trainable, opt_state, metrics


def make_train_step(method: Method, backbone: Backbone, tx: optax.GradientTransformation, mesh):
  def step(trainable, opt_state, tower, frozen, batch, rng, step):
    frozen, tower = jax.lax.stop_gradient((frozen, tower))
    batch, tower = tower_lib.train_batch(method, backbone, frozen["backbone"], tower, batch)
    trainable, opt_state, metrics = apply_step(method, tx, trainable, opt_state, frozen, batch,
                                               jax.random.fold_in(rng, step))
    return trainable, opt_state, tower, metrics

  repl = sharding.replicated(mesh)
  return jax.jit(step, donate_argnums=(0, 1), out_shardings=(repl, repl, repl, repl))


def make_feature_fn(backbone: Backbone):
  """uint8 images -> unnormalised image features, batch-sharded like its input."""
  return jax.jit(backbone.image_features)


def make_logits_fn(method: Method, backbone: Backbone):
  """Eval logits from features (cached) or from uint8 images (pixel methods), jitted; a run
  keeps one per method object (``Run.logits``), so its val, test and per-epoch passes share
  one compilation."""
  def logits(trainable, frozen, inputs):  # uint8 images -> [0, 1]; float features unchanged
    return method.logits(trainable, frozen, unit_range(inputs))
  return jax.jit(logits)
