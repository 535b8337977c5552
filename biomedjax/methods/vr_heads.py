"""The text heads of visual reprogramming: class-label prompts and attribute sentences.

Both are encoded once per run (``prepare``; no gradient, fp32) and L2-normalised; image features
are L2-normalised; scores are ``logit_scale * cos`` (100 for OpenAI CLIP).

* **Label head** (VP, AR; BioMedVR repo ``datasets/__init__.py`` ``basic_template``): one
  prompt per class, "This is a photo of {}." (no article) with "_" read as " ". Per class the
  prompt features are normalised, averaged over templates (there is one) and re-normalised:
  W (C, D); logits = scale * f W^T.
* **Attribute head** (AttrVR, BioMedVR; ``tools.py`` ``getLogits``): T (C, m, D), every sentence
  encoded alone (no template, no class name). ``s[b, c, j] = scale * <f_b, t_{c, j}>`` and
  ``logit[b, c]`` = the mean of the k largest ``s[b, c, :]`` (k = 3): the k nearest attributes
  of each image and class, re-selected every step, with the gradient through the selected k
  (``lax.top_k`` then mean, as torch's ``topk`` then ``mean``). With ``attr_sampling="unique"``
  classes may hold different counts n_c: rows are padded and masked, and each class averages
  its min(k, n_c) best.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from biomedjax.methods.zeroshot import encode_prompts
from biomedjax.models.clip import l2_normalize

LABEL_TEMPLATE = "This is a photo of {}."
_FLOOR = -1e9  # the score of a padding row: never among the top k of a real class


def label_sentences(classnames, template: str = LABEL_TEMPLATE) -> list[list[str]]:
  return [[template.format(c.replace("_", " "))] for c in classnames]


def valid_mask(sentences: list[list[str]]) -> np.ndarray:
  """(C, n_max) bool: which rows of ``encode``'s result are real sentences."""
  counts = np.asarray([len(p) for p in sentences])
  return np.arange(counts.max())[None, :] < counts[:, None]


def encode(backbone, params, sentences: list[list[str]]):
  """Per class sentences -> T (C, n_max, D) normalised, zero rows past a class's count."""
  return encode_heads(backbone, params, {"": sentences})[""]


def encode_heads(backbone, params, heads: dict[str, list[list[str]]]) -> dict:
  """``encode`` of several heads with ONE encoder pass over all their sentences (one token
  length, so the text tower compiles once), split back per head and class."""
  flat = [s for sentences in heads.values() for per_class in sentences for s in per_class]
  feats = encode_prompts(backbone, params, flat)
  out, start = {}, 0
  for name, sentences in heads.items():
    n = sum(len(p) for p in sentences)
    out[name] = _per_class(feats[start:start + n], sentences)
    start += n
  return out


def _per_class(feats, sentences):
  counts = [len(p) for p in sentences]
  n_max = max(counts)
  if min(counts) == n_max:  # the reference's case: m sentences for every class
    return feats.reshape(len(counts), n_max, -1)
  rows, start = [], 0
  for n in counts:
    block = feats[start:start + n]
    rows.append(jnp.concatenate([block, jnp.zeros((n_max - n, block.shape[1]), block.dtype)]))
    start += n
  return jnp.stack(rows)


def label_weights(backbone, params, sentences: list[list[str]]):
  """(C, D): normalised mean over each class's normalised template features."""
  feats, valid = encode(backbone, params, sentences), valid_mask(sentences)
  mean = (feats * valid[..., None]).sum(1) / valid.sum(1, keepdims=True)
  return l2_normalize(mean)


def label_logits(image_feats, weights, scale):
  return scale * l2_normalize(image_feats) @ weights.T


def attribute_logits(image_feats, text, valid, scale, k: int):
  """(B, D) features, (C, n, D) sentences, (C, n) valid -> (B, C) mean of the top-k scores."""
  valid = np.asarray(valid)
  counts = valid.sum(1)
  k_max = int(min(k, counts.max()))
  s = scale * jnp.einsum("bd,cnd->bcn", l2_normalize(image_feats), text)
  if valid.all() and k_max == k:  # the reference's case: every class holds m >= k sentences
    return jax.lax.top_k(s, k)[0].mean(-1)
  s = jnp.where(jnp.asarray(valid)[None], s, _FLOOR)
  top = jax.lax.top_k(s, k_max)[0]                               # (B, C, k_max)
  k_c = np.minimum(k, counts)                                    # per class
  weights = (np.arange(k_max)[None, :] < k_c[:, None]) / k_c[:, None]
  return (top * jnp.asarray(weights, jnp.float32)[None]).sum(-1)
