"""Building blocks shared by both towers: attention with a fused qkv projection, and the MLP.

timm's ViT keeps q, k and v in one ``qkv`` Linear; HuggingFace BERT keeps three. Both towers use
the fused form here (one matmul instead of three, faster on every backend); the conversion
concatenates BERT's three matrices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn


def activation(name: str):
  """The activation functions used by CLIP-family towers, by their config name."""
  if name == "gelu":        # torch.nn.GELU() / HF "gelu": exact erf form
    return lambda x: jax.nn.gelu(x, approximate=False)
  if name == "gelu_tanh":
    return lambda x: jax.nn.gelu(x, approximate=True)
  if name == "quick_gelu":  # OpenAI CLIP
    return lambda x: x * jax.nn.sigmoid(1.702 * x)
  if name == "relu":
    return jax.nn.relu
  raise ValueError(f"unknown activation {name!r}; use gelu, gelu_tanh, quick_gelu or relu")


class Attention(nn.Module):
  """Multi-head self-attention; ``mask`` is boolean (B, S), True where a key may be attended.

  ``dropout`` acts on the attention probabilities (HF BERT's ``attention_probs_dropout_prob``)
  and only when ``deterministic`` is False; the deterministic path is the fused kernel.
  ``causal``: query i attends keys 0..i only (OpenAI CLIP's text tower: its additive mask is -inf
  above the diagonal), combined with ``mask`` when both are given.
  """
  width: int
  heads: int
  qkv_bias: bool = True
  dropout: float = 0.0
  causal: bool = False

  @nn.compact
  def __call__(self, x, mask=None, deterministic: bool = True):
    b, s, _ = x.shape
    head_dim = self.width // self.heads
    qkv = nn.Dense(3 * self.width, use_bias=self.qkv_bias, name="qkv")(x)
    q, k, v = jnp.split(qkv.reshape(b, s, 3, self.heads, head_dim), 3, axis=2)
    q, k, v = (t[:, :, 0] for t in (q, k, v))  # (B, S, heads, head_dim)
    attn_mask = None if mask is None else mask[:, None, None, :]
    if deterministic or not self.dropout:
      out = jax.nn.dot_product_attention(q, k, v, mask=attn_mask, is_causal=self.causal)
    else:
      scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(head_dim).astype(q.dtype)
      if self.causal:
        causal = jnp.tril(jnp.ones((s, s), bool))[None, None]
        attn_mask = causal if attn_mask is None else attn_mask & causal
      if attn_mask is not None:
        scores = jnp.where(attn_mask, scores, jnp.finfo(scores.dtype).min)
      probs = nn.Dropout(self.dropout)(jax.nn.softmax(scores, axis=-1), deterministic=False)
      out = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
    return nn.Dense(self.width, name="proj")(out.reshape(b, s, self.width))


class Mlp(nn.Module):
  hidden: int
  act: str = "gelu"

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    x = activation(self.act)(nn.Dense(self.hidden, name="fc1")(x))
    return nn.Dense(width, name="fc2")(x)
