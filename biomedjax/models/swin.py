"""A Swin Transformer laid out as HuggingFace's ``SwinModel`` (``models/swin/modeling_swin.py``).

patch conv (4x4, stride 4, with bias) -> LayerNorm -> stages of blocks, a patch merging between
stages -> LayerNorm -> mean over tokens (``pooler_output``, HF's ``AdaptiveAvgPool1d(1)``).

A block: ``x += window_attention(LN(x))``; ``x += mlp(LN(x))``. Attention runs inside
non-overlapping ``window x window`` windows with a learned relative position bias
((2w-1)^2 x heads table, indexed as HF's ``relative_position_index``); every second block of a
stage first rolls the map by ``-window // 2`` and masks pairs of tokens that came from different
regions of the rolled map with ``-100`` (HF's ``get_attn_mask``), then rolls back. When a stage's
map is no larger than the window (Swin-T's last stage, 7x7), HF's ``set_shift_and_window_size``
turns the shift off and shrinks the window to the map: reproduced. Patch merging concatenates the
2x2 neighbours in HF's order (rows, then columns: (0,0), (1,0), (0,1), (1,1)), LayerNorm(4C), then
a Linear 4C -> 2C without bias.

No dropout and no stochastic depth: HF's Swin-T config has ``hidden_dropout_prob`` = 0 and
attention dropout 0, and ``drop_path_rate`` = 0.1 acts only in training mode, which the
references never put the frozen tower in (CalibPrompt ``coop_medclip.py:28`` calls ``.eval()``
and registers only the prompt learner with Dassl, line 316). Maps must be divisible by the
window (HF pads otherwise; every released Swin-T input, 224 px, is).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from biomedjax.models.config import SwinConfig
from biomedjax.models.layers import Mlp

SHIFT_MASK_VALUE = -100.0  # HF's masked_fill value for pairs across shifted regions


def relative_position_index(window: int) -> np.ndarray:
  """(w*w, w*w) indices into the (2w-1)^2 bias table (HF ``_create_relative_position_index``)."""
  coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
  rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
  return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shift_mask(size: int, window: int, shift: int) -> np.ndarray:
  """(num_windows, w*w, w*w) additive mask of a rolled ``size x size`` map (HF get_attn_mask)."""
  idx = np.arange(size)
  region = (idx >= size - window).astype(int) + (idx >= size - shift).astype(int)
  labels = (region[:, None] * 3 + region[None, :]).astype(np.float32)
  labels = partition(labels[None, :, :, None], window).reshape(-1, window * window)
  diff = labels[:, None, :] - labels[:, :, None]
  return np.where(diff != 0, SHIFT_MASK_VALUE, 0.0).astype(np.float32)


def partition(x, window: int):
  """(B, H, W, C) -> (B * H/w * W/w, w, w, C), windows in row-major order (HF window_partition)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // window, window, w // window, window, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def unpartition(windows, window: int, h: int, w: int):
  """Inverse of ``partition`` (HF window_reverse)."""
  c = windows.shape[-1]
  x = windows.reshape(-1, h // window, w // window, window, window, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


class WindowAttention(nn.Module):
  """Multi-head attention in a window, + relative position bias (+ the shift mask)."""
  width: int
  heads: int
  window: int
  qkv_bias: bool = True

  @nn.compact
  def __call__(self, x, mask=None):
    n, s, _ = x.shape  # (windows * B, w*w, C)
    head_dim = self.width // self.heads
    qkv = nn.Dense(3 * self.width, use_bias=self.qkv_bias, name="qkv")(x)
    q, k, v = (t[:, :, 0] for t in jnp.split(qkv.reshape(n, s, 3, self.heads, head_dim), 3, 2))
    table = self.param("relative_position_bias_table", nn.initializers.normal(0.02),
                       ((2 * self.window - 1) ** 2, self.heads))
    bias = table[relative_position_index(self.window).reshape(-1)].reshape(s, s, self.heads)
    bias = bias.transpose(2, 0, 1)[None].astype(x.dtype)  # (1, heads, s, s)
    if mask is not None:  # (num_windows, s, s), the windows of one image in order
      nw = mask.shape[0]
      bias = (bias.reshape(1, 1, self.heads, s, s) + mask[None, :, None].astype(x.dtype))
      bias = jnp.broadcast_to(bias, (n // nw, nw, self.heads, s, s)).reshape(n, self.heads, s, s)
    out = jax.nn.dot_product_attention(q, k, v, bias=bias)
    return nn.Dense(self.width, name="proj")(out.reshape(n, s, self.width))


class SwinBlock(nn.Module):
  cfg: SwinConfig
  width: int
  heads: int
  size: int      # the map is size x size
  shift: bool    # every second block of a stage

  @nn.compact
  def __call__(self, x):
    c = self.cfg
    window, shift = c.window_size, (c.window_size // 2 if self.shift else 0)
    if self.size <= window:  # HF set_shift_and_window_size
      window, shift = self.size, 0
    if self.size % window:
      raise ValueError(f"Swin map {self.size}x{self.size} is not a multiple of the window "
                       f"{window}: use an image size of patch_size * window * 2^k")
    b, length, ch = x.shape
    h = nn.LayerNorm(c.ln_eps, name="ln_before")(x).reshape(b, self.size, self.size, ch)
    if shift:
      h = jnp.roll(h, (-shift, -shift), axis=(1, 2))
    windows = partition(h, window).reshape(-1, window * window, ch)
    mask = jnp.asarray(shift_mask(self.size, window, shift)) if shift else None
    windows = WindowAttention(self.width, self.heads, window, c.qkv_bias, name="attn")(
        windows, mask)
    h = unpartition(windows.reshape(-1, window, window, ch), window, self.size, self.size)
    if shift:
      h = jnp.roll(h, (shift, shift), axis=(1, 2))
    x = x + h.reshape(b, length, ch)
    mlp = Mlp(int(self.width * c.mlp_ratio), c.act, name="mlp")
    return x + mlp(nn.LayerNorm(c.ln_eps, name="ln_after")(x))


class PatchMerging(nn.Module):
  eps: float

  @nn.compact
  def __call__(self, x, size: int):
    b, _, ch = x.shape
    x = x.reshape(b, size, size, ch)
    x = jnp.concatenate([x[:, r::2, c::2] for c in range(2) for r in range(2)], axis=-1)
    x = nn.LayerNorm(self.eps, name="norm")(x.reshape(b, -1, 4 * ch))
    return nn.Dense(2 * ch, use_bias=False, name="reduction")(x)


class SwinTransformer(nn.Module):
  """pixels (B, H, W, 3), normalised -> (B, width) pooled features (HF ``pooler_output``).

  ``remat``: blocks under ``jax.checkpoint`` (same outputs; see ``vit.VisionTransformer``)."""
  cfg: SwinConfig
  remat: bool = False

  @nn.compact
  def __call__(self, pixels):
    c = self.cfg
    if c.image_size % c.patch_size:
      raise ValueError(f"image_size {c.image_size} is not a multiple of patch_size {c.patch_size}")
    x = nn.Conv(c.embed_dim, (c.patch_size, c.patch_size), strides=c.patch_size,
                padding="VALID", name="patch_embed")(pixels)
    b, size = x.shape[0], x.shape[1]
    x = nn.LayerNorm(c.ln_eps, name="embed_norm")(x.reshape(b, -1, c.embed_dim))
    block = nn.remat(SwinBlock, static_argnums=()) if self.remat else SwinBlock
    width = c.embed_dim
    for s, (depth, heads) in enumerate(zip(c.depths, c.heads)):
      for i in range(depth):
        x = block(c, width, heads, size, i % 2 == 1, name=f"stage_{s}_block_{i}")(x)
      if s < len(c.depths) - 1:
        x = PatchMerging(c.ln_eps, name=f"stage_{s}_merge")(x, size)
        size, width = size // 2, width * 2
    x = nn.LayerNorm(c.ln_eps, name="norm")(x)
    return x.mean(axis=1)
