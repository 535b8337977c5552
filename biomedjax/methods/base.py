"""The contract between a method and the training engine.

A method is an object built once per run from the frozen backbone, the task and its config block.
It owns no parameters: the engine holds the trainable pytree (``init``), the frozen pytree
(``{"backbone": params, **prepare(params)}``) and the optimizer state, and calls the method's pure
functions inside ``jax.jit``. So the engine never branches on method names, and what trains is
exactly the pytree that ``init`` returns.

Methods declare two facts the engine acts on:

* ``requires_training``: False for training-free methods (zero-shot, linear probe, Tip-Adapter);
  the engine then calls ``fit`` on cached image features instead of running gradient steps.
* ``eval_on_features``: True when logits depend on the image only through the frozen, unaugmented
  image features; the engine then encodes each eval image once per run and passes features
  (B, D) to ``logits``. False (e.g. visual reprogramming) passes pixels.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from biomedjax.models.clip import CLIP, l2_normalize

Pytree = Any


@dataclasses.dataclass(frozen=True)
class Task:
  """What is being classified: class names in label order and the text resources for them."""
  classnames: tuple[str, ...]
  template: str = "a photo of a {}."                 # the hand-crafted prompt (METHODS.md §3)
  llm_prompts: dict[str, tuple[str, ...]] | None = None  # BiomedCoOp prompt ensembles

  @property
  def num_classes(self) -> int:
    return len(self.classnames)

  def prompts(self) -> list[str]:
    """The hand-crafted prompt of every class; '_' in names reads as a space (reference)."""
    return [self.template.format(c.replace("_", " ")) for c in self.classnames]


class Backbone:
  """Pure functions of the frozen CLIP, each taking the params pytree as an argument.

  Nothing here closes over parameters, so the 196M backbone weights are jit *arguments*, not
  compile-time constants. Host-side text processing (``tokenize``) is here too because methods
  build their prompt token ids once, at construction.
  """

  def __init__(self, module: CLIP, tokenizer):
    self.module = module
    self.cfg = module.cfg
    self.tokenizer = tokenizer

  def _apply(self, params, *args, method):
    return self.module.apply({"params": params}, *args, method=method)

  def image_features(self, params, pixels):
    """(B, H, W, 3) -> (B, D), unnormalised."""
    return self._apply(params, pixels, method=CLIP.encode_image)

  def embed_tokens(self, params, ids):
    return self._apply(params, ids, method=CLIP.embed_tokens)

  def text_features_from_embeds(self, params, embeds, mask):
    return self._apply(params, embeds, mask.astype(bool), method=CLIP.encode_text_embeds)

  def text_features(self, params, ids, mask):
    return self._apply(params, ids, mask.astype(bool), method=CLIP.encode_text)

  def logit_scale(self, params):
    """exp(logit_scale): the temperature open_clip multiplies cosines by."""
    return jnp.exp(params["logit_scale"])

  def tokenize(self, texts, length="bucket"):
    return self.tokenizer(texts, length)

  @functools.partial(jax.jit, static_argnums=0)
  def encode_texts(self, params, ids, mask):
    """Normalised text features of token ids, jitted; for one-off prompt encoding."""
    return l2_normalize(self.text_features(params, ids, mask))


class Method(Protocol):
  requires_training: bool
  eval_on_features: bool

  def prepare(self, backbone_params: Pytree) -> dict:
    """Constants computed once per run from the frozen backbone (e.g. template text features)."""

  def init(self, rng: jax.Array, frozen: Pytree) -> Pytree:
    """The trainable pytree (empty for training-free methods)."""

  def loss(self, trainable: Pytree, frozen: Pytree, batch: dict, rng: jax.Array
           ) -> tuple[jax.Array, dict]:
    """Scalar training loss and auxiliary metrics for a batch {"image", "label"}."""

  def logits(self, trainable: Pytree, frozen: Pytree, inputs: jax.Array) -> jax.Array:
    """(B, num_classes) logits from image features (or pixels, see ``eval_on_features``)."""

  # Training-free methods only (requires_training = False):
  def fit(self, frozen: Pytree, train_features, train_labels, val_features, val_labels
          ) -> Pytree:
    """The 'trainable' pytree fitted in closed form on cached, unnormalised image features."""
