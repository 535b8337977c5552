"""CLIP-Adapter as BiomedCoOp's few-shot harness runs it.

Reference: HealthX-Lab/BiomedCoOp ``trainers/ClipAdapter/clip_adapter_biomedclip.py`` and
``configs/trainers/CLIP_Adapter/few_shot.yaml``.

Trainable: a visual adapter A without biases, ``A(f) = relu(relu(f W1) W2)`` with W1 (d, d/4) and
W2 (d/4, d) (Flax layout: the transposes of torch's Linear weights), initialised as torch's
Linear default ``U(-1/sqrt(fan_in), +1/sqrt(fan_in))``. It acts on the normalised image feature f:
``f' = alpha A(f) + (1 - alpha) f`` (alpha = 0.5, NOT re-normalised) and
``logits = exp(logit_scale) f' T^T`` with the model's logit scale and the normalised
single-template text features T (N, d). Loss: mean cross-entropy. Nothing else trains.

Optimiser: plain SGD (lr 0.01, no momentum, no weight decay), batch 32, 20 epochs of
ceil(n / 32) iterations (``drop_last=False``), a fresh augmented batch every step.

**Schedule quirk, reproduced:** Dassl's ConstantWarmupScheduler (1 warm-up step at 1e-5) around
CosineAnnealingLR(T_max=20), stepped once per *iteration*: iteration t uses 1e-5 at t = 0 and
``0.01 (1 + cos(pi (t - 1) / 20)) / 2`` after, a periodic cosine that reaches 0 at t = 21 and
climbs back to 0.01 at t = 41 (``learning_rate`` below).

**Selection quirk, reproduced:** the reported adapter is the last epoch's (the reference saves the
best-val one but never reloads it); ``select="best_val"`` takes the first epoch with the best val
accuracy instead. The reference's alpha search (off by default there, and broken) is not offered.

Several seeds of a setting (``fit_runs``, biomedjax/train/fit_pack.py): every run's own init,
loader orders and views, the 20-epoch loops of all runs as one vmapped scan.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from biomedjax.methods import base, harness, options

SELECTS = ("last", "best_val")


@dataclasses.dataclass(frozen=True)
class Options:
  alpha: float = 0.5          # alpha_ca: residual ratio of the adapted feature
  reduction: int = 4          # hidden width d / 4
  select: str = "last"        # "last" (reference) | "best_val"
  lr: float = 0.01            # plain SGD: no momentum, no weight decay
  batch_size: int = 32
  epochs: int = 20            # also the cosine's period T_max, in iterations
  warmup_lr: float = 1e-5
  warmup_steps: int = 1


def init_adapter(rng, dim: int, reduction: int = 4) -> dict:
  """Torch Linear default init, bias-free: W1 ~ U(+-1/sqrt(d)), W2 ~ U(+-1/sqrt(d/4))."""
  hidden = dim // reduction
  k1, k2 = jax.random.split(rng)
  b1, b2 = 1.0 / math.sqrt(dim), 1.0 / math.sqrt(hidden)
  return {"w1": jax.random.uniform(k1, (dim, hidden), jnp.float32, -b1, b1),
          "w2": jax.random.uniform(k2, (hidden, dim), jnp.float32, -b2, b2)}


def adapter(params, x):
  return jax.nn.relu(jax.nn.relu(x @ params["w1"]) @ params["w2"])


def adapted_logits(params, feats_n, text, scale, alpha: float):
  """Logits of normalised features: ``scale (alpha A(f) + (1 - alpha) f) T^T``."""
  mixed = alpha * adapter(params, feats_n) + (1.0 - alpha) * feats_n
  return scale * mixed @ text.T


def learning_rate(t, lr: float = 0.01, period: int = 20, warmup_lr: float = 1e-5,
                  warmup_steps: int = 1):
  """The LR of iteration t (0-based): the reference's per-iteration warm-up + periodic cosine."""
  t = jnp.asarray(t)
  cosine = 0.5 * lr * (1.0 + jnp.cos(jnp.pi * (t - warmup_steps) / period))
  return jnp.where(t < warmup_steps, warmup_lr, cosine)


def _masked_loss(params, feats_n, labels, mask, text, scale, alpha):
  """Mean CE over the real rows of a padded batch (the last batch of an epoch may be short)."""
  logits = adapted_logits(params, feats_n, text, scale, alpha)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.sum(ce * mask) / jnp.sum(mask)


def train_on_views(params, views, orders, labels, text, scale, opts: Options, *,
                   lr=0.01, batch_size=32, warmup_lr=1e-5, warmup_steps=1, val=None):
  """The reference's training loop on precomputed features; pure and jittable.

  ``views`` (E, n, d) unnormalised augmented features, one view per epoch; ``orders`` (E, n) the
  shuffled loader order of each epoch. Epoch e makes ceil(n / batch_size) SGD steps on
  ``views[e, orders[e]]`` in order, the last one possibly short. With ``val = (feats, labels)``
  (unnormalised val features)
  and ``select="best_val"`` the first epoch with the best val accuracy is returned, else the last.
  Returns (params, per-step loss (E * steps,)).
  """
  epochs, n, _ = views.shape
  steps = -(-n // batch_size)
  pad = steps * batch_size - n
  order = jnp.concatenate([orders, jnp.zeros((epochs, pad), orders.dtype)], axis=1)
  mask = jnp.concatenate([jnp.ones((n,)), jnp.zeros((pad,))]).reshape(steps, batch_size)
  views_n = views / jnp.linalg.norm(views, axis=-1, keepdims=True)
  grad = jax.value_and_grad(_masked_loss)

  def step(params, inputs):
    t, feats, y, m = inputs
    loss, g = grad(params, feats, y, m, text, scale, opts.alpha)
    rate = learning_rate(t, lr, epochs, warmup_lr, warmup_steps)
    return jax.tree.map(lambda p, d: p - rate * d, params, g), loss

  def epoch(carry, e):
    params, best = carry
    idx = order[e].reshape(steps, batch_size)
    ts = e * steps + jnp.arange(steps)
    params, losses = jax.lax.scan(step, params, (ts, views_n[e][idx], labels[idx], mask))
    if val is not None and opts.select == "best_val":
      val_n = val[0] / jnp.linalg.norm(val[0], axis=-1, keepdims=True)
      correct = (adapted_logits(params, val_n, text, scale, opts.alpha).argmax(-1)
                 == val[1]).sum()
      take = correct > best[0]
      best = (jnp.where(take, correct, best[0]),
              jax.tree.map(lambda a, b: jnp.where(take, a, b), params, best[1]))
    return (params, best), losses

  if opts.select not in SELECTS:
    raise ValueError(f"config.method.select={opts.select!r}; expected one of {SELECTS}")
  best = (jnp.int32(-1), params)
  (params, best), losses = jax.lax.scan(epoch, (params, best), jnp.arange(epochs))
  if val is not None and opts.select == "best_val":
    params = best[1]
  return params, losses.reshape(-1)


def read_options(cfg) -> Options:
  opts = options.read(Options, cfg, "clip_adapter")
  if opts.select not in SELECTS:
    raise ValueError(f"config.method.select={opts.select!r}; expected one of {SELECTS}")
  return opts


class ClipAdapter(base.Method):
  """The reference's 20-epoch loop runs in ``fit`` on cached augmented views (one per epoch,
  ``fit_views``), so its per-iteration schedule, short last batches and last-epoch pick are
  exact; the adapter acts on image features only, so it transfers to novel class names."""
  name = "clip_adapter"
  read_options = staticmethod(read_options)
  harness_protocol = True  # BiomedCoOp's adapter harness (its reported std convention)
  inputs = "features"
  stages = ("fit",)
  packs_runs = True

  @property
  def fit_views(self) -> int:
    return self.opts.epochs

  def prepare(self, backbone_params) -> dict:
    return {"text_features": harness.text_features(self, backbone_params)}

  def _fit_args(self, frozen, train, val, rng):
    """(adapter init, (E, n, d) views, (E, n) orders, labels) of one run, and the shared val."""
    harness.check_labels(train.labels, self.task.num_classes, "train", self.name)
    if self.opts.select == "best_val":
      harness.check_val(val, self.name)
    rng = jax.random.key(0) if rng is None else rng
    views = harness.train_views(train)
    n = views.shape[1]
    views = views[np.arange(self.opts.epochs) % views.shape[0]]
    k_init, k_order = jax.random.split(rng)
    params = init_adapter(k_init, views.shape[2], self.opts.reduction)
    orders = jax.vmap(lambda k: jax.random.permutation(k, n))(
        jax.random.split(k_order, self.opts.epochs))
    val_xy = None if val is None else (jnp.asarray(val.features, jnp.float32),
                                       jnp.asarray(val.labels, jnp.int32))
    return (params, jnp.asarray(views), orders, jnp.asarray(train.labels, jnp.int32)), val_xy

  def fit(self, frozen, train, val, rng=None) -> dict:
    run, val_xy = self._fit_args(frozen, train, val, rng)
    scale = self.backbone.logit_scale(frozen["backbone"])
    params, _ = _train_jit(*run, frozen["text_features"], scale, self.opts, val_xy)
    return params

  def fit_runs(self, frozen, trains, val, rngs) -> list:
    """The runs' 20-epoch loops as one vmapped scan (inits, views and orders per run)."""
    args = [self._fit_args(frozen, t, val, r) for t, r in zip(trains, rngs)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[a[0] for a in args])
    scale = self.backbone.logit_scale(frozen["backbone"])
    params, _ = _train_runs(*stacked, frozen["text_features"], scale, self.opts, args[0][1])
    return [jax.tree.map(lambda x: x[r], params) for r in range(len(trains))]

  def logits(self, trainable, frozen, features):
    scale = self.backbone.logit_scale(frozen["backbone"])
    feats_n = features / jnp.linalg.norm(features, axis=-1, keepdims=True)
    return adapted_logits(trainable, feats_n, frozen["text_features"], scale, self.opts.alpha)

  def transfer(self, trainable, novel):
    return trainable  # class-agnostic: the novel method brings its own text features


def _train(params, views, orders, labels, text, scale, opts, val):
  return train_on_views(params, views, orders, labels, text, scale, opts, lr=opts.lr,
                        batch_size=opts.batch_size, warmup_lr=opts.warmup_lr,
                        warmup_steps=opts.warmup_steps, val=val)


_train_jit = jax.jit(_train, static_argnums=(6,))


@functools.partial(jax.jit, static_argnums=(6,))
def _train_runs(params, views, orders, labels, text, scale, opts, val):
  """``_train`` vmapped over runs (leading axis of params, views, orders, labels)."""
  return jax.vmap(lambda p, v, o, y: _train(p, v, o, y, text, scale, opts, val))(
      params, views, orders, labels)


def build(backbone, task, cfg=None, objective=None) -> ClipAdapter:
  return ClipAdapter(backbone, task, read_options(cfg), objective)
