"""CoOp: learned context vectors in front of (or around) each class name, frozen CLIP towers.

Reference: CoOp's ``PromptLearner`` as the BiomedCoOp release runs it on BiomedCLIP
(``trainers/CoOp/coop_biomedclip.py``). The only trainable leaf is ``{"ctx": ...}`` —
(N_CTX, width) shared by all classes, or (n_cls, N_CTX, width) class-specific (``csc``) —
initialised from the word embeddings of ``ctx_init`` ("a photo of a") or N(0, 0.02²). Each step
encodes every class prompt "ctx_1..ctx_n {class}." with the text tower (at a bucketed length) and
the logits are ``exp(logit_scale) * cos(image, text)``; the data term (cross-entropy by default)
comes from ``config.loss``. Reference settings: batch 32, SGD lr 0.002, 100 epochs (50 for
base-to-novel), cosine, one warmup epoch at constant 1e-5.
"""

from __future__ import annotations

import dataclasses

import jax

from biomedjax.methods import options
from biomedjax.methods.base import Backbone, Method, Task
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
  # "true": the class name moves as a block for middle/front. "reference": the BiomedCLIP
  # trainers' quirk, a name length of 1 token (only the first token of the name moves).
  name_length: str = "true"


Options = CoOpOptions


class CoOp(Method):
  name = "coop"
  options_type = CoOpOptions
  inputs = "features"
  stages = ("train",)
  task_kinds = ("multiclass", "multilabel")

  def __init__(self, backbone: Backbone, task: Task, opts: CoOpOptions, objective=None):
    super().__init__(backbone, task, opts, objective)
    self.learner = PromptLearner(backbone, task.classnames, opts.n_ctx, opts.ctx_init, opts.csc,
                                 opts.class_token_position, opts.prompt_length,
                                 opts.name_length)

  def prepare(self, backbone_params) -> dict:
    return {"token_embeddings": self.learner.token_embeddings(backbone_params)}

  def init(self, rng, frozen) -> dict:
    return {"ctx": self.learner.init_context(rng, frozen["backbone"])}

  def text_features(self, trainable, frozen, dropout_rng=None) -> jax.Array:
    """(n_cls, D) normalised text features of the learned prompts."""
    return l2_normalize(self.learner.text_features(
        frozen["backbone"], trainable["ctx"], frozen["token_embeddings"], dropout_rng))

  def features_logits(self, frozen, image_features, text) -> jax.Array:
    """scale * cos(image, text), ``text`` (n_cls, D): ``Backbone.cosine_logits``."""
    return self.backbone.cosine_logits(frozen["backbone"], image_features, text)

  def logits(self, trainable, frozen, image_features) -> jax.Array:
    return self.features_logits(frozen, image_features, self.text_features(trainable, frozen))

  def train_logits(self, trainable, frozen, batch, rng):
    text = self.text_features(trainable, frozen)
    return self.features_logits(frozen, batch["features"], text), {"text_features": text}

  def transfer(self, trainable, novel):
    """A unified context is class-agnostic: it is reused under the novel class names."""
    if self.opts.csc:
      raise ValueError(f"{self.name} with csc=True learns one context per base class, which "
                       "says nothing about novel classes; base-to-novel needs "
                       "--config.method.csc=False")
    return trainable


def build(backbone: Backbone, task: Task, cfg=None, objective=None) -> CoOp:
  return CoOp(backbone, task, options.read(CoOpOptions, cfg, "coop"), objective)
