"""The compiled functions of a run: one train step for every method, and feature extraction.

The step is a pure function ``(trainable, opt_state, frozen, batch, rng, step) -> (trainable,
opt_state, metrics)``, jitted once. ``trainable`` and ``opt_state`` are donated (updated in
place); ``frozen`` (the backbone and the method's constants) is an *argument*, so 196M weights
are never baked into the program, is wrapped in ``stop_gradient`` and is never donated.
Gradients are taken with respect to ``trainable`` only. A method may supply its own
``value_and_grad`` (ProGrad projects one gradient onto another); the engine does not care which.
"""

from __future__ import annotations

import jax
import optax

from biomedjax.methods.base import Backbone, Method
from biomedjax.train import sharding


def make_train_step(method: Method, tx: optax.GradientTransformation, mesh):
  grad_fn = getattr(method, "value_and_grad", None) or jax.value_and_grad(method.loss,
                                                                          has_aux=True)

  def step(trainable, opt_state, frozen, batch, rng, step):
    frozen = jax.lax.stop_gradient(frozen)
    (loss, aux), grads = grad_fn(trainable, frozen, batch, jax.random.fold_in(rng, step))
    updates, opt_state = tx.update(grads, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    metrics = {"loss": loss, **aux, "grad_norm": optax.tree.norm(grads),
               "update_norm": optax.tree.norm(updates)}
    return trainable, opt_state, metrics

  repl = sharding.replicated(mesh)
  return jax.jit(step, donate_argnums=(0, 1), out_shardings=(repl, repl, repl))


def make_feature_fn(backbone: Backbone):
  """pixels -> unnormalised image features, batch-sharded like its input."""
  return jax.jit(backbone.image_features)


def make_logits_fn(method: Method):
  return jax.jit(method.logits)
