"""The user-facing model: ``biomedjax.load(DIR)`` on a directory written by ``convert.biomedclip``.

A converted directory holds ``config.json`` (the ``CLIPConfig``), ``params/`` (an orbax
checkpoint of the parameter pytree), ``tokenizer/`` (the tokenizer files of the config's family:
WordPiece for BiomedCLIP, byte-level BPE for OpenAI CLIP) and ``manifest.json`` (provenance).
``BiomedCLIP`` bundles the Linen module, its parameters, the tokenizer and the eval preprocessing,
and exposes open_clip's entry points as jitted functions.
The parameters are passed to each jitted function as an argument, so they are never baked into
the compiled program as constants and can be swapped (e.g. by a training loop) without recompiling.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from biomedjax.models import families
from biomedjax.models import preprocess as _pre
from biomedjax.models import resnet
from biomedjax.models.clip import CLIP, backbone_of, variables
from biomedjax.models.config import CLIPConfig
from biomedjax.models.tokenizer import Tokenizer

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"
TOKENIZER_DIR = "tokenizer"
MANIFEST_FILE = "manifest.json"


def _init_fn(cfg: CLIPConfig):
  """seed -> the parameter pytree of ``cfg`` (random init, traced on dummy inputs), with the
  BatchNorm statistics under ``batch_stats`` for a ResNet tower (``clip.variables``)."""
  module = CLIP(cfg)
  pixels = jnp.zeros((1, cfg.vision.image_size, cfg.vision.image_size, 3), jnp.float32)
  ids = jnp.zeros((1, 8), jnp.int32)

  def init(seed):
    key = jax.random.key(seed)
    backbone = backbone_of(module.init(key, pixels, ids))
    if "batch_stats" in backbone:
      backbone = resnet.calibrate_stats(module, backbone, jax.random.fold_in(key, 1))
    return backbone
  return init


def abstract_params(cfg: CLIPConfig):
  """Shapes and dtypes of the parameter pytree, without allocating it."""
  return jax.eval_shape(_init_fn(cfg), 0)


def init_params(cfg: CLIPConfig, seed: int = 0):
  """Random parameters (for tests and the offline demo; no pretrained knowledge)."""
  return jax.jit(_init_fn(cfg))(seed)


def save_params(path: str | pathlib.Path, params) -> None:
  import orbax.checkpoint as ocp
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(pathlib.Path(path).absolute(), params)
    ckptr.wait_until_finished()


def restore_params(path: str | pathlib.Path, cfg: CLIPConfig):
  """Restores the checkpoint at ``path`` into the tree of ``cfg``; a mismatch names the leaf."""
  import orbax.checkpoint as ocp
  path = pathlib.Path(path).absolute()
  target = abstract_params(cfg)
  with ocp.StandardCheckpointer() as ckptr:
    stored = ckptr.metadata(path)
    stored_tree = getattr(stored, "item_metadata", stored)
    _check_same_tree(stored_tree, target, path)
    return ckptr.restore(path, target)


def _check_same_tree(stored, target, path) -> None:
  flat_s = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(stored)}
  flat_t = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(target)}
  missing, extra = sorted(set(flat_t) - set(flat_s)), sorted(set(flat_s) - set(flat_t))
  if missing or extra:
    raise ValueError(f"{path}: checkpoint does not match config.json: missing {missing[:5]}, "
                     f"unexpected {extra[:5]}")
  for k, t in flat_t.items():
    shape = tuple(getattr(flat_s[k], "shape", ()))
    if shape != tuple(t.shape):
      raise ValueError(f"{path}: parameter {k} has shape {shape}, config.json needs {t.shape}")


class BiomedCLIP:
  """A CLIP-family two-tower model with its parameters, tokenizer and preprocessing."""

  def __init__(self, cfg: CLIPConfig, params: Any, tokenizer: Tokenizer | None = None):
    self.cfg = cfg
    self.module = CLIP(cfg)
    self.params = params
    self.tokenizer = tokenizer
    apply = self.module.apply
    self._encode_image = jax.jit(functools.partial(apply, method=CLIP.encode_image))
    self._encode_text = jax.jit(functools.partial(apply, method=CLIP.encode_text))
    self._logits = jax.jit(apply)

  # -- inputs ---------------------------------------------------------------------------------
  def preprocess(self, image) -> np.ndarray:
    """PIL image -> float32 (H, W, 3), open_clip's eval transform for this model."""
    return _pre.preprocess(image, self.cfg.vision.image_size, self.cfg.image_mean,
                           self.cfg.image_std)

  def tokenize(self, texts, length=None):
    """texts -> (input_ids, attention_mask) int32; see ``Tokenizer.__call__`` for ``length``."""
    if self.tokenizer is None:
      raise ValueError("this model was built without a tokenizer; load a converted directory")
    return self.tokenizer(texts, length)

  # -- encoders -------------------------------------------------------------------------------
  def encode_image(self, pixels_nhwc) -> jax.Array:
    """(B, H, W, 3) preprocessed pixels -> (B, embed_dim) unnormalised image features."""
    return self._encode_image(variables(self.params), jnp.asarray(pixels_nhwc, jnp.float32))

  def encode_text(self, input_ids, attention_mask=None) -> jax.Array:
    """(N, L) ids -> (N, embed_dim) unnormalised text features.

    Without a mask: BERT masks ids == pad, the causal CLIP tower pools at argmax(ids) (open_clip).
    """
    return self._encode_text(variables(self.params), jnp.asarray(input_ids, jnp.int32),
                             _mask(attention_mask))

  def logits(self, pixels_nhwc, input_ids, attention_mask=None) -> jax.Array:
    """(B, N) = open_clip's ``logits_per_image``."""
    return self._logits(variables(self.params), jnp.asarray(pixels_nhwc, jnp.float32),
                        jnp.asarray(input_ids, jnp.int32), _mask(attention_mask))

  @property
  def logit_scale(self) -> float:
    return float(np.exp(np.asarray(self.params["logit_scale"])))


def _mask(attention_mask):
  return None if attention_mask is None else jnp.asarray(attention_mask).astype(bool)


def load(path: str | pathlib.Path) -> BiomedCLIP:
  """Loads a directory written by ``python -m convert.biomedclip``, or ``hf-hub:<id>`` (converted
  once into the cache, ``biomedjax.hub``)."""
  from biomedjax import hub
  path = hub.resolve(path) if hub.is_hub(path) else pathlib.Path(path)
  config_file = path / CONFIG_FILE
  if not config_file.is_file():
    raise FileNotFoundError(f"{config_file} not found: is {path} a directory written by "
                            "`python -m convert.biomedclip --out`?")
  try:
    cfg = CLIPConfig.from_json(config_file.read_text())
  except (ValueError, TypeError) as e:
    raise ValueError(f"{config_file}: {e}") from e
  params = restore_params(path / PARAMS_DIR, cfg)
  tokenizer = families.load_tokenizer(path / TOKENIZER_DIR, cfg)
  return BiomedCLIP(cfg, params, tokenizer)


def read_manifest(path: str | pathlib.Path) -> dict:
  return json.loads((pathlib.Path(path) / MANIFEST_FILE).read_text())
