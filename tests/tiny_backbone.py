"""A random-weight tiny BiomedCLIP ``Backbone`` with a small vocabulary, for method tests.

Shared by the method test files (CoOp family, zero-shot); no PyTorch needed.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from biomedjax.methods.base import Backbone
from biomedjax.models import biomedclip as bc
from biomedjax.models import config as model_config
from biomedjax.models.clip import CLIP
from biomedjax.models.tokenizer import Tokenizer
from biomedjax.models.vocab import write_vocab

CLASSNAMES = ("glioma tumor", "meningioma_tumor", "pituitary tumor", "normal brain")
WORDS = ("a photo of an x the mri scan showing glioma meningioma pituitary tumor normal brain "
         "##oma with").split()


def make(tmp_dir: pathlib.Path, seed: int = 0):
  """-> (backbone, params) of the tiny preset."""
  cfg = model_config.tiny()
  vocab = write_vocab(tmp_dir, WORDS, size=cfg.text.vocab_size)
  return Backbone(CLIP(cfg), Tokenizer(vocab, cfg.text.context_length)), bc.init_params(cfg, seed)


def word_embeddings(params):
  return params["text"]["word_embeddings"]["embedding"]


def with_features(method, batch, frozen):
  """The batch as the engine hands it to ``method``: + "features" from the frozen image tower
  (``inputs="features"``) or images scaled to [0, 1] (``inputs="pixels"``)."""
  from biomedjax.train import step as step_lib
  batch = {k: jax.numpy.asarray(v) for k, v in batch.items()}
  return step_lib.method_batch(method, method.backbone, frozen["backbone"], batch)


def image_batch(n: int, num_classes: int, seed: int = 0, size: int = 224) -> dict:
  """Random uint8 images (what the input pipeline yields) with cycling labels."""
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8),
          "label": np.arange(n, dtype=np.int32) % num_classes}


def sgd_steps(method, trainable, frozen, batch, steps: int = 5, lr: float = 0.5):
  """A few jitted SGD-momentum steps on one batch -> (trainable, losses).

  For the "loss falls, only the trainable pytree changes" checks of every method test; the
  engine's own step is exercised by tests/test_train.py.
  """
  import optax
  tx = optax.sgd(lr, momentum=0.9)

  @jax.jit
  def step(trainable, opt_state, frozen, batch):
    (loss, _), grads = jax.value_and_grad(method.loss, has_aux=True)(
        trainable, frozen, batch, jax.random.key(0))
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state, loss

  batch = with_features(method, batch, frozen)
  opt_state, losses = tx.init(trainable), []
  for _ in range(steps):
    trainable, opt_state, loss = step(trainable, opt_state, frozen, batch)
    losses.append(float(loss))
  return trainable, losses
