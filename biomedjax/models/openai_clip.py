"""The towers of OpenAI CLIP as open_clip (``open_clip/transformer.py``) and HF ``CLIPModel``
build them.

Vision: patch conv without bias -> prepend ``class_embedding`` -> + ``positional_embedding`` ->
``ln_pre`` -> pre-norm blocks -> ``ln_post`` on the class token -> ``@ proj`` (no bias).
Text: ``token_embedding`` + ``positional_embedding`` -> pre-norm blocks under a causal mask (no
padding mask) -> ``ln_final`` at the end-of-text token -> ``@ text_projection``.
Blocks: ``x += attn(ln_1(x)); x += mlp(ln_2(x))`` with QuickGELU for the OpenAI weights (the
activation and LayerNorm eps come from the config). Submodule names follow open_clip so the
mapping in ``convert/`` reads one-to-one.

End-of-text pooling: open_clip takes the row at ``argmax(ids)`` (EOT is the largest id of its
vocabulary); given a mask it is the last real token, ``mask.sum() - 1``, which is the same row for
tokenized text and needs no ids, so prompt learning (which replaces embeddings, not ids) pools
correctly. Under the causal mask nothing after EOT reaches that row, so the features do not
depend on how many pads follow: prompts may run at a short bucketed length instead of 77.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn

from biomedjax.models.config import TextConfig, VisionConfig
from biomedjax.models.layers import Attention, Mlp


class ResidualBlock(nn.Module):
  """open_clip ``ResidualAttentionBlock``: pre-norm attention and MLP."""
  width: int
  heads: int
  mlp_dim: int
  act: str
  ln_eps: float
  causal: bool = False

  @nn.compact
  def __call__(self, x):
    x = x + Attention(self.width, self.heads, qkv_bias=True, causal=self.causal, name="attn")(
        nn.LayerNorm(self.ln_eps, name="ln_1")(x))
    return x + Mlp(self.mlp_dim, self.act, name="mlp")(nn.LayerNorm(self.ln_eps, name="ln_2")(x))


def _blocks(c, causal: bool, remat: bool = False):
  block = nn.remat(ResidualBlock) if remat else ResidualBlock
  return [block(c.width, c.heads, c.mlp_dim, c.act, c.ln_eps, causal, name=f"resblocks_{i}")
          for i in range(c.depth)]


class OpenAIVisionTransformer(nn.Module):
  """pixels (B, H, W, 3), normalised -> image features (B, embed_dim), unnormalised.

  ``remat``: blocks under ``jax.checkpoint`` (see ``biomedjax.models.vit.VisionTransformer``).
  """
  cfg: VisionConfig
  embed_dim: int
  remat: bool = False

  @nn.compact
  def __call__(self, pixels):
    c = self.cfg
    x = nn.Conv(c.width, (c.patch_size, c.patch_size), strides=c.patch_size, padding="VALID",
                use_bias=False, name="conv1")(pixels)
    b = x.shape[0]
    x = x.reshape(b, -1, c.width)
    scale = c.width ** -0.5
    cls = self.param("class_embedding", nn.initializers.normal(scale), (c.width,))
    pos = self.param("positional_embedding", nn.initializers.normal(scale),
                     (c.num_patches + 1, c.width))
    x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, c.width)).astype(x.dtype), x], axis=1)
    x = nn.LayerNorm(c.ln_eps, name="ln_pre")(x + pos)
    for block in _blocks(c, causal=False, remat=self.remat):
      x = block(x)
    pooled = nn.LayerNorm(c.ln_eps, name="ln_post")(x[:, 0])
    proj = self.param("proj", nn.initializers.normal(scale), (c.width, self.embed_dim))
    return pooled @ proj


class CausalTextTransformer(nn.Module):
  """OpenAI CLIP's text tower, with the same two entry points as the BERT tower."""
  cfg: TextConfig
  embed_dim: int

  def setup(self):
    c = self.cfg
    self.token_embedding = nn.Embed(c.vocab_size, c.width,
                                    embedding_init=nn.initializers.normal(0.02))
    self.positional_embedding = self.param("positional_embedding", nn.initializers.normal(0.01),
                                           (c.max_positions, c.width))
    self.blocks = _blocks(c, causal=True)
    self.ln_final = nn.LayerNorm(c.ln_eps)
    self.text_projection = self.param("text_projection", nn.initializers.normal(c.width ** -0.5),
                                      (c.width, self.embed_dim))

  def embed_tokens(self, ids):
    """ids (N, L) int -> token embeddings (N, L, width), the rows prompt learning may replace."""
    return self.token_embedding(ids)

  def encode_embeds(self, embeds, mask, deterministic: bool = True, eot_index=None):
    """token embeddings (N, L, width) + mask (N, L) -> features (N, embed_dim).

    Pools at ``eot_index`` if given, else at the last True of ``mask`` (its count - 1).
    ``deterministic`` is accepted for the BERT tower's interface: OpenAI CLIP's text tower has no
    dropout (open_clip builds it with none), so training and eval mode are the same function.
    """
    c = self.cfg
    length = embeds.shape[1]
    if length > c.max_positions:
      raise ValueError(f"text length {length} exceeds max_positions {c.max_positions}")
    if c.pool != "eot":
      raise ValueError(f"text pool {c.pool!r}: the causal text tower pools at 'eot'")
    x = embeds + self.positional_embedding[None, :length].astype(embeds.dtype)
    for block in self.blocks:
      x = block(x)
    if eot_index is None:
      eot_index = jnp.sum(mask.astype(jnp.int32), axis=-1) - 1
    pooled = jnp.take_along_axis(x, eot_index[:, None, None], axis=1)[:, 0]
    return self.ln_final(pooled) @ self.text_projection

  def __call__(self, ids, mask=None):
    """mask None: pool at argmax(ids), open_clip's rule (EOT is the largest id)."""
    embeds = self.embed_tokens(ids)
    if mask is None:
      return self.encode_embeds(embeds, None, eot_index=jnp.argmax(ids, axis=-1))
    return self.encode_embeds(embeds, mask.astype(bool))
