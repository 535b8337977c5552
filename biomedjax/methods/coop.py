"""CoOp: learned context vectors in front of (or around) each class name (METHODS.md §4).

The only trainable leaf is ``{"ctx": ...}``; the backbone and the prompts' word embeddings are
frozen constants. Each step encodes the batch's pixels with the frozen image tower and every
class prompt with the text tower (at a bucketed length), and takes the cross-entropy of
``exp(logit_scale) * cos(image, text)``.
"""

from __future__ import annotations

import dataclasses

import jax

from biomedjax import losses
from biomedjax.methods import options
from biomedjax.methods.base import Backbone, Task
from biomedjax.methods.prompt_learner import PromptLearner
from biomedjax.models.clip import l2_normalize


@dataclasses.dataclass(frozen=True)
class CoOpOptions:
  """The reference's vit_b16 config (N_CTX 4, CTX_INIT "a photo of a", CSC False, end)."""
  n_ctx: int = 4
  ctx_init: str = "a photo of a"   # "" -> random N(0, 0.02^2) context
  csc: bool = False                # class-specific context
  class_token_position: str = "end"  # "end" | "middle" | "front"
  prompt_length: int = 0           # tokens per prompt; 0 -> the longest rounded up to 16


class CoOp:
  requires_training = True
  eval_on_features = True

  def __init__(self, backbone: Backbone, task: Task, opts: CoOpOptions):
    self.backbone = backbone
    self.task = task
    self.opts = opts
    self.learner = PromptLearner(backbone, task.classnames, opts.n_ctx, opts.ctx_init, opts.csc,
                                 opts.class_token_position, opts.prompt_length)

  def prepare(self, backbone_params) -> dict:
    return {"token_embeddings": self.learner.token_embeddings(backbone_params)}

  def init(self, rng, frozen) -> dict:
    return {"ctx": self.learner.init_context(rng, frozen["backbone"])}

  def text_features(self, trainable, frozen) -> jax.Array:
    """(n_cls, D) normalised text features of the learned prompts."""
    return l2_normalize(self.learner.text_features(
        frozen["backbone"], trainable["ctx"], frozen["token_embeddings"]))

  def logits(self, trainable, frozen, image_features) -> jax.Array:
    scale = self.backbone.logit_scale(frozen["backbone"])
    return scale * l2_normalize(image_features) @ self.text_features(trainable, frozen).T

  def loss(self, trainable, frozen, batch, rng):
    feats = self.backbone.image_features(frozen["backbone"], batch["image"])
    logits = self.logits(trainable, frozen, feats)
    loss, accuracy = losses.cross_entropy(logits, batch["label"])
    return loss, {"accuracy": accuracy}


def build(backbone: Backbone, task: Task, cfg=None) -> CoOp:
  return CoOp(backbone, task, options.read(CoOpOptions, cfg, "coop"))
