"""Losses shared by the methods (each method's own terms stay in its module)."""

import jax
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean softmax cross-entropy with integer labels, and the batch accuracy for logging."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return ce, (logits.argmax(-1) == labels).mean()
