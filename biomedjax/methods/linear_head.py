"""A linear classifier on frozen image features, trained by gradient steps.

The general form of a probe: logits = x W + b on the (optionally L2-normalised) image features,
trained with the run's data objective (``config.loss``: softmax CE for a multiclass task, sigmoid
BCE for a multilabel one) and the run's optimizer. Unlike ``linear_probe`` (the reference's
closed-form L-BFGS fit with a C search, multiclass only) it serves multilabel tasks, where the
published chest X-ray study trains a 512 -> 14 head with BCE. Initialised as
``torch.nn.Linear``: W, b ~ U(-1/sqrt(D), 1/sqrt(D)).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from biomedjax.methods import options
from biomedjax.methods.base import Backbone, Method, Task
from biomedjax.models.clip import l2_normalize


def torch_linear_init(rng: jax.Array, fan_in: int, fan_out: int) -> dict:
  """``torch.nn.Linear``'s default init: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  kw, kb = jax.random.split(rng)
  return {"kernel": jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound),
          "bias": jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound)}


@dataclasses.dataclass(frozen=True)
class LinearHeadOptions:
  normalize: bool = False  # L2-normalise the image features before the head


Options = LinearHeadOptions


class LinearHead(Method):
  name = "linear_head"
  options_type = LinearHeadOptions
  inputs = "features"
  stages = ("train",)
  task_kinds = ("multiclass", "multilabel")

  def init(self, rng, frozen) -> dict:
    return {"head": torch_linear_init(rng, self.backbone.cfg.embed_dim, self.task.num_classes)}

  def logits(self, trainable, frozen, features):
    x = l2_normalize(features) if self.opts.normalize else features
    return x @ trainable["head"]["kernel"] + trainable["head"]["bias"]


def build(backbone: Backbone, task: Task, cfg=None, objective=None) -> LinearHead:
  return LinearHead(backbone, task, options.read(LinearHeadOptions, cfg, "linear_head"), objective)
