"""The image tower: a pre-norm Vision Transformer laid out like timm's, plus open_clip's head.

Submodule names follow timm (``patch_embed``, ``blocks_i/{norm1,attn,norm2,mlp}``, ``norm``) so the
PyTorch -> Flax mapping in ``convert/`` reads one-to-one.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn

from biomedjax.models.config import VisionConfig
from biomedjax.models.layers import Attention, Mlp


class PreNormBlock(nn.Module):
  cfg: VisionConfig

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    x = x + Attention(c.width, c.heads, c.qkv_bias, name="attn")(
        nn.LayerNorm(c.ln_eps, name="norm1")(x))
    return x + Mlp(c.mlp_dim, c.act, name="mlp")(nn.LayerNorm(c.ln_eps, name="norm2")(x))


class VisionTransformer(nn.Module):
  """pixels (B, H, W, 3), normalised -> image features (B, embed_dim), unnormalised.

  ``remat``: each block under ``jax.checkpoint`` (``nn.remat``): its activations are recomputed
  in the backward pass instead of stored, for gradients w.r.t. the input pixels (visual
  reprogramming) at batch sizes whose activations would not fit. Same parameters, same outputs.
  """
  cfg: VisionConfig
  embed_dim: int
  remat: bool = False

  @nn.compact
  def __call__(self, pixels):
    c = self.cfg
    x = nn.Conv(c.width, (c.patch_size, c.patch_size), strides=c.patch_size, padding="VALID",
                name="patch_embed")(pixels)
    b = x.shape[0]
    x = x.reshape(b, -1, c.width)
    cls = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, c.width))
    pos = self.param("pos_embed", nn.initializers.normal(0.02), (1, c.num_patches + 1, c.width))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c.width)).astype(x.dtype), x], axis=1) + pos
    block = nn.remat(PreNormBlock) if self.remat else PreNormBlock
    for i in range(c.depth):
      x = block(c, name=f"blocks_{i}")(x)
    x = nn.LayerNorm(c.ln_eps, name="norm")(x)
    pooled = x[:, 0] if c.pool == "token" else x[:, 1:].mean(axis=1)
    return nn.Dense(self.embed_dim, use_bias=c.proj_bias, name="head_proj")(pooled)
