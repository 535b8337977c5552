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


def normalize(x):
  """Rows scaled to unit L2 norm in float64: the independent side of the method tests."""
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def image_batch(n: int, num_classes: int, seed: int = 0, size: int = 224) -> dict:
  """Random uint8 images (what the input pipeline yields) with cycling labels."""
  rng = np.random.default_rng(seed)
  return {"image": rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8),
          "label": np.arange(n, dtype=np.int32) % num_classes}


_LAST_STEP = [None, None]  # (method, its jitted step): the last method's, reused for its next lr


def engine_steps(method, trainable, frozen, batch, n: int = 2, lr: float = 0.02):
  """``n`` steps of the engine's own jitted train step (SGD with momentum) on one batch of
  images -> (trainable, opt_state, losses): ``n + 1`` losses, the last one measured after the
  ``n`` updates with the first step's rng (a method with dropout draws the same mask), like for
  like. The one step helper of the method tests (the contract test and the per-method ones)."""
  import jax.numpy as jnp
  import optax
  from biomedjax.train import step as step_lib
  # lr as optimizer state, not a constant of the program: one compiled step per method serves
  # every lr (the contract's second run at 0.5 does not compile again).
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=0.9)
  if _LAST_STEP[0] is not method:
    _LAST_STEP[:] = method, step_lib.make_train_step(
        method, method.backbone, tx, jax.sharding.Mesh(jax.devices()[:1], ("data",)))
  step = _LAST_STEP[1]
  opt_state, losses = tx.init(trainable), []
  copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731  (the step donates its inputs)
  for i in range(n + 1):
    new, new_opt, _, metrics = step(copy(trainable), copy(opt_state), {}, frozen, batch,
                                    jax.random.key(1), jnp.int32(i if i < n else 0))
    losses.append(float(metrics["loss"]))
    if i < n:
      trainable, opt_state = new, new_opt
  return trainable, opt_state, losses
