"""CoOp's learnable prompts, shared by CoOp, CoCoOp, KgCoOp, ProGrad and BiomedCoOp.

The reference (CoOp's ``PromptLearner``, ``trainers/CoOp/coop_biomedclip.py`` of the BiomedCoOp
release) tokenizes "X X X X {name}." per class,
looks up the word embeddings and splices learned context vectors in place of the X tokens::

  end:     [CLS] ctx_1..ctx_n  name  .  [SEP]  pad...
  middle:  [CLS] ctx_1..ctx_h  name  ctx_h+1..ctx_n  .  [SEP]  pad...    (h = n // 2)
  front:   [CLS] name  ctx_1..ctx_n  .  [SEP]  pad...

Only the order of rows changes between positions, and a word embedding is a pure row lookup, so
the rearrangement is done here once, on the token ids, at build time (host side, numpy). What
remains on the device is one exact scatter of the context rows into the frozen embeddings of
those ids (``prompt_embeddings``): no per-class Python loop, no concatenation per step.

The attention mask is that of the tokenized prompt: rearranging keeps the token count. Prompts
are tokenized at a bucketed length rather than the reference's 256; pads are masked out of every
attention and the text tower pools at position 0, so features do not depend on the pad count
(tested against the 256-token reference) and each step runs BERT on ~16 tokens instead of 256.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from biomedjax.methods.base import Backbone

POSITIONS = ("end", "middle", "front")
NAME_LENGTHS = ("true", "reference")
CTX_STD = 0.02  # N(0, 0.02^2), the reference's random init


@dataclasses.dataclass(frozen=True)
class PromptLayout:
  """Host-side facts of the class prompts, fixed for a run."""
  prompts: tuple[str, ...]   # the texts tokenized, e.g. "X X X X glioma tumor."
  ids: np.ndarray            # (n_cls, L) int32, rearranged for the class token position
  mask: np.ndarray           # (n_cls, L) int32 attention mask (1 = token)
  ctx_positions: np.ndarray  # (n_cls, n_ctx) int32: where ctx_k goes in class c's prompt
  name_lens: tuple[int, ...]  # class-name token counts (without [CLS]/[SEP])
  init_ids: np.ndarray | None  # (n_ctx,) ids of ctx_init's tokens, or None (random init)


def _token_ids(backbone: Backbone, text: str) -> np.ndarray:
  """Token ids of ``text`` without [CLS]/[SEP], with the backbone's own tokenizer."""
  ids, mask = backbone.tokenize([text], length="bucket")
  n = int(mask[0].sum())
  return ids[0, 1:n - 1]


def _rearrange(row: np.ndarray, n_ctx: int, name_len: int, position: str):
  """One prompt's ids in the reference's order; returns (ids, context positions)."""
  prefix, ctx, suffix = row[:1], row[1:1 + n_ctx], row[1 + n_ctx:]
  name, rest = suffix[:name_len], suffix[name_len:]
  half = n_ctx // 2
  if position == "end":
    parts = [prefix, ctx, suffix]
    pos = 1 + np.arange(n_ctx)
  elif position == "middle":
    parts = [prefix, ctx[:half], name, ctx[half:], rest]
    pos = np.concatenate([1 + np.arange(half), 1 + name_len + np.arange(half, n_ctx)])
  else:  # front
    parts = [prefix, name, ctx, rest]
    pos = 1 + name_len + np.arange(n_ctx)
  return np.concatenate(parts), pos


def build_layout(backbone: Backbone, classnames, n_ctx: int, ctx_init: str = "",
                 position: str = "end", length: int | str = "bucket",
                 name_length: str = "true") -> PromptLayout:
  """Tokenizes the class prompts and lays out where the context vectors go.

  ``name_length="reference"`` reproduces the BiomedCLIP trainers' quirk for "middle"/"front":
  they take a class name's length as ``len(tokenizer(name))``, which is 1 (one padded row), so
  only the first token of a multi-word name moves and the rest stays after the context.

  ``ctx_init`` (e.g. "a photo of a") replaces the X placeholders; it must tokenize to exactly
  ``n_ctx`` tokens, since its token embeddings initialise the context. ``length``: "bucket"
  (the longest prompt rounded up to 16) or a fixed int, e.g. 256 to mirror the reference.
  """
  if position not in POSITIONS:
    raise ValueError(f"class_token_position {position!r}: use one of {POSITIONS}")
  if name_length not in NAME_LENGTHS:
    raise ValueError(f"name_length {name_length!r}: use one of {NAME_LENGTHS}")
  if n_ctx < 1:
    raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
  if not classnames:
    raise ValueError("no class names: the task has no classes")
  init_ids = None
  if ctx_init:
    ctx_init = ctx_init.replace("_", " ")
    init_ids = _token_ids(backbone, ctx_init)
    if len(init_ids) != n_ctx:
      raise ValueError(f"ctx_init {ctx_init!r} has {len(init_ids)} tokens but n_ctx={n_ctx}; "
                       f"set n_ctx={len(init_ids)} or change ctx_init")
  prefix = ctx_init or " ".join(["X"] * n_ctx)
  names = [c.replace("_", " ") for c in classnames]
  prompts = tuple(f"{prefix} {name}." for name in names)
  ids, mask = backbone.tokenize(list(prompts), length=length)
  name_ids = [_token_ids(backbone, name) for name in names]
  rows, positions = [], []
  for c, (row, nid) in enumerate(zip(ids, name_ids)):
    if not np.array_equal(row[1 + n_ctx:1 + n_ctx + len(nid)], nid):
      raise ValueError(f"class {c} ({classnames[c]!r}): its tokens in prompt {prompts[c]!r} "
                       f"differ from the name's own tokens {nid.tolist()}; the name cannot be "
                       "moved as a block for class_token_position")
    moved = 1 if name_length == "reference" else len(nid)
    row, pos = _rearrange(row, n_ctx, moved, position)
    rows.append(row)
    positions.append(pos)
  return PromptLayout(prompts=prompts, ids=np.stack(rows).astype(np.int32),
                      mask=mask.astype(np.int32),
                      ctx_positions=np.stack(positions).astype(np.int32),
                      name_lens=tuple(len(n) for n in name_ids), init_ids=init_ids)


def prompt_embeddings(ctx: jax.Array, token_embeddings: jax.Array,
                      ctx_positions: np.ndarray) -> jax.Array:
  """Splices the context into the frozen prompt embeddings: -> (n_cls, L, width).

  ctx: (n_ctx, width) shared by all classes, or (n_cls, n_ctx, width) class-specific (CSC).
  For per-image context (CoCoOp), ``jax.vmap`` this over a leading image axis of ``ctx``.
  A scatter, not a one-hot matmul, so the context rows arrive bit-exact at any matmul precision.
  """
  n_cls, n_ctx = ctx_positions.shape
  ctx = jnp.broadcast_to(ctx, (n_cls, n_ctx, ctx.shape[-1])).astype(token_embeddings.dtype)
  rows = np.arange(n_cls)[:, None]
  return token_embeddings.at[rows, ctx_positions].set(ctx)


class PromptLearner:
  """The learnable-prompt part of a method: layout, context init and prompt text features.

  Holds no parameters. Frozen constants (``token_embeddings``) go into the method's frozen
  pytree via ``prepare``; the context is the method's trainable leaf.
  """

  def __init__(self, backbone: Backbone, classnames, n_ctx: int = 4, ctx_init: str = "",
               csc: bool = False, class_token_position: str = "end",
               prompt_length: int = 0, name_length: str = "true"):
    self.backbone = backbone
    self.n_cls = len(classnames)
    self.n_ctx = n_ctx
    self.csc = csc
    self.layout = build_layout(backbone, classnames, n_ctx, ctx_init, class_token_position,
                               prompt_length or "bucket", name_length)

  @property
  def ctx_shape(self) -> tuple[int, ...]:
    width = self.backbone.cfg.text.width
    return (self.n_cls, self.n_ctx, width) if self.csc else (self.n_ctx, width)

  def token_embeddings(self, backbone_params) -> jax.Array:
    """(n_cls, L, width) word embeddings of the prompt ids; a frozen constant of the run."""
    return self.backbone.embed_tokens(backbone_params, jnp.asarray(self.layout.ids))

  def init_context(self, rng: jax.Array, backbone_params) -> jax.Array:
    """ctx_init's word embeddings (repeated per class under CSC), else N(0, 0.02^2).

    The reference ignores CSC when ctx_init is given (one shared context); here CSC is honoured
    by giving every class its own copy of the same initial words.
    """
    if self.layout.init_ids is None:
      return CTX_STD * jax.random.normal(rng, self.ctx_shape, jnp.float32)
    ctx = self.backbone.embed_tokens(backbone_params, jnp.asarray(self.layout.init_ids)[None])[0]
    return jnp.broadcast_to(ctx, self.ctx_shape)

  def prompt_embeddings(self, ctx: jax.Array, token_embeddings: jax.Array) -> jax.Array:
    return prompt_embeddings(ctx, token_embeddings, self.layout.ctx_positions)

  def text_features(self, backbone_params, ctx: jax.Array, token_embeddings: jax.Array,
                    dropout_rng=None) -> jax.Array:
    """(n_cls, D) unnormalised text features of the prompts with context ``ctx``;
    ``dropout_rng`` runs the text tower in training mode (BiomedCoOp's reference)."""
    embeds = self.prompt_embeddings(ctx, token_embeddings)
    return self.backbone.text_features_from_embeds(backbone_params, embeds,
                                                   jnp.asarray(self.layout.mask), dropout_rng)
