"""The two-tower model: image tower, text tower and the learned logit scale.

The towers are those of ``cfg.family`` (``biomedjax.models.families``); the entry points and the
parameter layout (``visual``, ``text``, ``logit_scale``) are the same for every family.

A Linen module, so its parameters are one plain pytree: the frozen backbone that methods receive
as an argument (never closed over, never differentiated). ``method=`` selects the entry point::

  module.apply(variables(p), pixels, method=CLIP.encode_image)

Towers with BatchNorm (the ResNet towers, ``biomedjax/models/resnet.py``) also have running
statistics. They travel inside the same backbone pytree under the top-level key ``batch_stats``
(absent for the other families), so a backbone is still one pytree that is loaded, passed, saved
and exported whole; ``variables`` splits it into Flax's collections. Eval mode uses the running
statistics; ``encode_image_train`` is the reference's train mode (batch statistics, running
statistics updated as torch's ``BatchNorm2d.train()``) and returns the updated backbone.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn

from biomedjax.models import families
from biomedjax.models.config import CLIPConfig


STATS = "batch_stats"


def variables(backbone) -> dict:
  """Backbone pytree -> Flax variables: ``{"params": ..., "batch_stats": ...}`` when the
  backbone carries BatchNorm statistics, else ``{"params": backbone}``."""
  if STATS not in backbone:
    return {"params": backbone}
  return {"params": {k: v for k, v in backbone.items() if k != STATS}, STATS: backbone[STATS]}


def backbone_of(flax_variables) -> dict:
  """Inverse of ``variables``: Flax variables (e.g. from ``init``) -> one backbone pytree."""
  params = dict(flax_variables["params"])
  if flax_variables.get(STATS):
    params[STATS] = flax_variables[STATS]
  return params


def encode_image_train(module, backbone, pixels):
  """The image tower in training mode: -> (features, backbone with updated ``batch_stats``).

  What the reference does while Dassl's ``set_model_mode("train")`` has put the frozen tower in
  train mode (BiomedCoOp registers the whole wrapper, ``biomedcoop_pmcclip.py:330``; Dassl
  ``dassl/engine/trainer.py:203-210,586-587``): BatchNorm normalises with the batch's statistics
  and its running statistics drift. A tower without BatchNorm returns the backbone unchanged.
  """
  if STATS not in backbone:
    return module.apply({"params": backbone}, pixels, method=CLIP.encode_image), backbone
  feats, upd = module.apply(variables(backbone), pixels, method=CLIP.encode_image,
                            mutable=[STATS])
  return feats, {**backbone, STATS: upd[STATS]}


def l2_normalize(x, eps=1e-12):
  """As torch.nn.functional.normalize: x / max(||x||, eps)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class CLIP(nn.Module):
  """``remat``: the image tower's blocks under ``jax.checkpoint`` (a run option, config
  ``model.remat``, not an architecture fact: parameters and outputs are the same)."""
  cfg: CLIPConfig
  remat: bool = False

  def setup(self):
    family = families.of(self.cfg)
    self.visual = family.vision(self.cfg.vision, self.cfg.embed_dim, remat=self.remat)
    self.text = family.text(self.cfg.text, self.cfg.embed_dim)
    self.logit_scale = self.param(
        "logit_scale", nn.initializers.constant(self.cfg.init_logit_scale), ())

  def encode_image(self, pixels):
    return self.visual(pixels)

  def embed_tokens(self, ids):
    return self.text.embed_tokens(ids)

  def encode_text_embeds(self, embeds, mask, deterministic: bool = True):
    return self.text.encode_embeds(embeds, mask, deterministic)

  def encode_text(self, ids, mask=None):
    return self.text(ids, mask)

  def scale(self):
    """exp(logit_scale); families whose reference clamps it first (MedCLIP) clamp it here."""
    bounds = families.of(self.cfg).logit_scale_range
    return jnp.exp(self.logit_scale if bounds is None else jnp.clip(self.logit_scale, *bounds))

  def __call__(self, pixels, ids, mask=None):
    """logits_per_image (B, N) = exp(logit_scale) * cos(image, text), as open_clip."""
    img = l2_normalize(self.encode_image(pixels))
    txt = l2_normalize(self.encode_text(ids, mask))
    return self.scale() * img @ txt.T
