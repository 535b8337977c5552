"""``Backbone``: the frozen CLIP's pure functions, each taking the params pytree as an argument.

What every method computes with (``biomedjax.methods.base`` re-exports it): image and text
features, the logit scale, tokenization. Lives with the models because it is the models' API,
not a method.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from biomedjax.models.clip import CLIP, encode_image_train, l2_normalize, variables

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def unit_range(images):
  """uint8 images -> float32 in [0, 1]; float images are taken to be in [0, 1] already."""
  x = images.astype(jnp.float32)
  return x / jnp.float32(255.0) if images.dtype == jnp.uint8 else x


class Backbone:
  """Pure functions of the frozen CLIP, each taking the params pytree as an argument.

  Nothing here closes over parameters, so the 196M backbone weights are jit *arguments*, not
  compile-time constants. Host-side text processing (``tokenize``) is here too because methods
  build their prompt token ids once, at construction.

  Images enter as uint8 or as float in [0, 1] and are standardised here, on the device, with the
  model config's own mean/std: the input pipeline ships 1 byte per channel instead of 4 and knows
  nothing about the backbone. ``compute_dtype`` ("float32" or "bfloat16") is the dtype the towers
  compute in; parameters stay float32 and outputs are float32.
  """

  def __init__(self, module: CLIP, tokenizer, compute_dtype: str = "float32"):
    if compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(f"model.compute_dtype {compute_dtype!r}: use one of "
                       f"{sorted(COMPUTE_DTYPES)}")
    self.module = module
    self.cfg = module.cfg
    self.tokenizer = tokenizer
    self.dtype = COMPUTE_DTYPES[compute_dtype]

  def _cast(self, tree):
    if self.dtype == jnp.float32:
      return tree
    return jax.tree.map(lambda x: x.astype(self.dtype) if jnp.issubdtype(x.dtype, jnp.floating)
                        else x, tree)

  def _apply(self, params, *args, method, rngs=None, **kwargs):
    out = self.module.apply(variables(self._cast(params)), *self._cast(args), method=method,
                            rngs=rngs, **kwargs)
    return out.astype(jnp.float32)

  def normalize(self, images):
    """uint8 or [0, 1] float images (..., H, W, 3) -> standardised float32 pixels."""
    x = unit_range(images)
    mean = jnp.asarray(self.cfg.image_mean, jnp.float32)
    std = jnp.asarray(self.cfg.image_std, jnp.float32)
    return (x - mean) / std

  def image_features(self, params, images):
    """(B, H, W, 3) uint8 or [0, 1] images -> (B, D) unnormalised image features."""
    return self.encode_pixels(params, self.normalize(images))

  def encode_pixels(self, params, pixels):
    """(B, H, W, 3) already standardised pixels -> (B, D), unnormalised."""
    return self._apply(params, pixels, method=CLIP.encode_image)

  def encode_pixels_train(self, params, pixels):
    """Train-mode image tower (BatchNorm on batch statistics, the reference's default for
    BiomedCoOp): -> ((B, D) float32 features, params with the updated ``batch_stats``)."""
    feats, new = encode_image_train(self.module, self._cast(params), self._cast(pixels))
    if "batch_stats" not in params:
      return feats.astype(jnp.float32), params
    # the statistics stay float32 whatever the compute dtype
    stats = jax.tree.map(lambda x: x.astype(jnp.float32), new["batch_stats"])
    return feats.astype(jnp.float32), {**params, "batch_stats": stats}

  def embed_tokens(self, params, ids):
    return self.module.apply(variables(params), ids, method=CLIP.embed_tokens)

  def text_features_from_embeds(self, params, embeds, mask, dropout_rng=None):
    """Prompt embeddings (N, L, width) -> (N, D). ``dropout_rng``: run the text tower in
    training mode (its dropout active), as a reference that trains it in train mode does."""
    if dropout_rng is None:
      return self._apply(params, embeds, mask.astype(bool), method=CLIP.encode_text_embeds)
    return self._apply(params, embeds, mask.astype(bool), method=CLIP.encode_text_embeds,
                       rngs={"dropout": dropout_rng}, deterministic=False)

  def text_features(self, params, ids, mask):
    return self._apply(params, ids, mask.astype(bool), method=CLIP.encode_text)

  def logit_scale(self, params):
    """exp(logit_scale): the temperature open_clip multiplies cosines by."""
    return jnp.exp(params["logit_scale"])

  def cosine_logits(self, params, image_features, text_features):
    """scale * cos(image, text): (B, D), (C, D) -> (B, C). The one CLIP logit formula."""
    return (self.logit_scale(params) * l2_normalize(image_features)
            @ l2_normalize(text_features).T)

  def tokenize(self, texts, length="bucket"):
    return self.tokenizer(texts, length)

  @functools.partial(jax.jit, static_argnums=0)
  def encode_texts(self, params, ids, mask):
    """Normalised text features of token ids, jitted; for one-off prompt encoding."""
    return l2_normalize(self.text_features(params, ids, mask))
