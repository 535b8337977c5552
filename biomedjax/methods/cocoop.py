"""CoCoOp: CoOp whose context is shifted per image by a small meta-network.

Reference: ``trainers/CoCoOp/cocoop_biomedclip.py`` of the BiomedCoOp release (batch 1, SGD lr
0.001, 10 epochs, N_CTX 4 from "a photo of a", fp32).

A fixed learned context overfits the base classes; conditioning it on the image (ctx_i = ctx +
pi(x_i), pi = Linear(D -> D/16) -> ReLU -> Linear(D/16 -> width) on the normalised image feature)
is what lets CoCoOp generalise to novel classes. The price: every image has its own prompts, so
the text tower runs images x classes times per step (the reference uses batch 1 for that reason).

Here the per-image context goes through ``prompt_embeddings`` vmapped over images, and the
(B, n_cls) prompts are encoded as ONE text-tower batch rather than the reference's Python loop
over images. Training and evaluation need only the frozen image features (``inputs =
"features"``), so the engine's features serve both; ``logits`` walks them in chunks of
``eval_chunk`` images to bound the text tower's memory.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from biomedjax.methods import coop, options
from biomedjax.methods.base import Backbone, Task
from biomedjax.methods.linear_head import torch_linear_init
from biomedjax.methods.prompt_learner import prompt_embeddings
from biomedjax.models.clip import l2_normalize


@dataclasses.dataclass(frozen=True)
class CoCoOpOptions(coop.CoOpOptions):
  """CoOp's options (reference: N_CTX 4, "a photo of a", unified, end) plus the eval chunk."""
  eval_chunk: int = 32  # images per text-tower call in ``logits`` (memory, not maths)


Options = CoCoOpOptions


def meta_net(net: dict, image: jax.Array) -> jax.Array:
  """(B, D) normalised image features -> (B, width) context bias."""
  h = jax.nn.relu(image @ net["linear1"]["kernel"] + net["linear1"]["bias"])
  return h @ net["linear2"]["kernel"] + net["linear2"]["bias"]


class CoCoOp(coop.CoOp):
  name = "cocoop"
  options_type = CoCoOpOptions

  def __init__(self, backbone: Backbone, task: Task, opts: CoCoOpOptions, objective=None):
    super().__init__(backbone, task, opts, objective)
    if opts.eval_chunk < 1:
      raise ValueError(f"cocoop eval_chunk={opts.eval_chunk}: must be >= 1")

  def init(self, rng, frozen) -> dict:
    k_ctx, k1, k2 = jax.random.split(rng, 3)
    dim, width = self.backbone.cfg.embed_dim, self.backbone.cfg.text.width
    hidden = dim // 16
    return {"ctx": self.learner.init_context(k_ctx, frozen["backbone"]),
            "meta_net": {"linear1": torch_linear_init(k1, dim, hidden),
                         "linear2": torch_linear_init(k2, hidden, width)}}

  def image_text_features(self, trainable, frozen, image: jax.Array) -> jax.Array:
    """(B, D) normalised image features -> (B, n_cls, D) normalised per-image text features."""
    bias = meta_net(trainable["meta_net"], image)            # (B, width)
    ctx = trainable["ctx"]
    ctx = ctx[None] + bias.reshape(bias.shape[:1] + (1,) * (ctx.ndim - 1) + bias.shape[1:])
    positions = self.learner.layout.ctx_positions
    embeds = jax.vmap(prompt_embeddings, in_axes=(0, None, None))(
        ctx, frozen["token_embeddings"], positions)          # (B, n_cls, L, width)
    b, c, length, width = embeds.shape
    mask = jnp.broadcast_to(jnp.asarray(self.learner.layout.mask), (b, c, length))
    feats = self.backbone.text_features_from_embeds(
        frozen["backbone"], embeds.reshape(b * c, length, width), mask.reshape(b * c, length))
    return l2_normalize(feats.reshape(b, c, -1))

  def _logits(self, trainable, frozen, image: jax.Array) -> jax.Array:
    scale = self.backbone.logit_scale(frozen["backbone"])
    return scale * jnp.einsum("bd,bcd->bc", image, self.image_text_features(trainable, frozen,
                                                                             image))

  def logits(self, trainable, frozen, image_features) -> jax.Array:
    image = l2_normalize(image_features)
    n, chunk = image.shape[0], min(self.opts.eval_chunk, image.shape[0])
    pad = -n % chunk
    chunks = jnp.pad(image, ((0, pad), (0, 0))).reshape(-1, chunk, image.shape[-1])
    out = jax.lax.map(lambda x: self._logits(trainable, frozen, x), chunks)
    return out.reshape(n + pad, -1)[:n]

  def train_logits(self, trainable, frozen, batch, rng):
    return self._logits(trainable, frozen, l2_normalize(batch["features"])), {}


def build(backbone: Backbone, task: Task, cfg=None, objective=None) -> CoCoOp:
  return CoCoOp(backbone, task, options.read(CoCoOpOptions, cfg, "cocoop"), objective)
