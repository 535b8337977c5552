"""The text tower: a post-norm BERT encoder as HuggingFace builds it, plus open_clip's head.

Two entry points, because prompt learning replaces some token embeddings by learned vectors:
``embed_tokens`` (ids -> word embeddings) and ``encode_embeds`` (word embeddings + mask -> text
features). ``__call__`` chains them. Positions are 0..L-1 and token types 0, as HF's defaults.

Pad positions are masked out of every attention, so the [CLS] output does not depend on how many
pads follow the prompt: training may run prompts at a short bucketed length instead of 256.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn

from biomedjax.models.config import TextConfig
from biomedjax.models.layers import Attention, Mlp, activation


class PostNormBlock(nn.Module):
  """HF ``BertLayer``: dropout (hidden) on each sublayer's output before its residual + norm."""
  cfg: TextConfig

  @nn.compact
  def __call__(self, x, mask, deterministic: bool = True):
    c = self.cfg
    drop = nn.Dropout(c.hidden_dropout, deterministic=deterministic)
    attn = Attention(c.width, c.heads, True, c.attention_dropout, name="attn")
    x = nn.LayerNorm(c.ln_eps, name="attn_norm")(x + drop(attn(x, mask, deterministic)))
    return nn.LayerNorm(c.ln_eps, name="mlp_norm")(
        x + drop(Mlp(c.mlp_dim, c.act, name="mlp")(x)))


class TextTransformer(nn.Module):
  cfg: TextConfig
  embed_dim: int

  def setup(self):
    c = self.cfg
    self.word_embeddings = nn.Embed(c.vocab_size, c.width)
    self.position_embeddings = nn.Embed(c.max_positions, c.width)
    self.token_type_embeddings = nn.Embed(c.type_vocab_size, c.width)
    self.embed_norm = nn.LayerNorm(c.ln_eps)
    self.embed_dropout = nn.Dropout(c.hidden_dropout)
    self.blocks = [PostNormBlock(c, name=f"layer_{i}") for i in range(c.depth)]
    if c.proj == "mlp":
      self.proj_0 = nn.Dense((c.width + self.embed_dim) // 2, use_bias=c.proj_bias)
      self.proj_2 = nn.Dense(self.embed_dim, use_bias=c.proj_bias)
    elif c.proj == "linear":
      self.proj_0 = nn.Dense(self.embed_dim, use_bias=c.proj_bias)
    elif c.proj == "pooler":  # HF BertPooler, then PMC-CLIP's bare projection matrix
      self.pooler = nn.Dense(c.width)
      self.proj_0 = nn.Dense(self.embed_dim, use_bias=False)
    else:
      raise ValueError(f"text proj {c.proj!r}: use 'mlp', 'linear' or 'pooler'")

  def embed_tokens(self, ids):
    """ids (N, L) int -> word embeddings (N, L, width), the rows prompt learning may replace."""
    return self.word_embeddings(ids)

  def embed_positions(self, embeds, deterministic: bool = True):
    """word embeddings (N, L, width) -> BERT's embedding output (+ positions 0..L-1, token type
    0, LayerNorm, dropout): HF's ``hidden_states[0]``."""
    length = embeds.shape[1]
    if length > self.cfg.max_positions:
      raise ValueError(f"text length {length} exceeds max_positions {self.cfg.max_positions}")
    x = (embeds + self.position_embeddings.embedding[None, :length]
         + self.token_type_embeddings.embedding[0])
    return self.embed_dropout(self.embed_norm(x), deterministic=deterministic)

  def encode_embeds(self, embeds, mask, deterministic: bool = True):
    """word embeddings (N, L, width) + boolean mask (N, L) -> features (N, embed_dim).

    ``deterministic=False`` is HF's training mode: dropout after the embedding norm and in every
    layer (needs a "dropout" rng); open_clip's pooler and projection have no dropout."""
    c = self.cfg
    x = self.embed_positions(embeds, deterministic)
    for block in self.blocks:
      x = block(x, mask, deterministic)
    if c.pool != "cls":
      raise ValueError(f"text pool {c.pool!r}: only 'cls' (open_clip cls_last_hidden_state) exists")
    pooled = x[:, 0]
    if c.proj == "mlp":
      return self.proj_2(activation("gelu")(self.proj_0(pooled)))
    if c.proj == "pooler":  # pooler_output @ text_projection_layer (biomedcoop_pmcclip.py:65-67)
      return self.proj_0(jnp.tanh(self.pooler(pooled)))
    return self.proj_0(pooled)

  def __call__(self, ids, mask=None):
    if mask is None:
      mask = ids != self.cfg.pad_id
    return self.encode_embeds(self.embed_tokens(ids), mask.astype(bool))
