"""A linear head fitted on cached image features by the IU-Xray study's early-stopped AdamW loop.

Unlike ``linear_head`` (the engine's optimizer and schedule, a fixed number of steps), the whole
training loop runs inside ``fit``, because it needs what only ``fit`` sees: the validation
features, for early stopping and best-epoch reload. The data term is the run's objective
(``config.loss``): sigmoid BCE on a multilabel task, as the reference, softmax CE on a multiclass
one. The reference is the IU-Xray study's linear probe (Sadman et al., BIOKDD'25; ``train_eval_biomedclip(mode=
"linearprobe")`` in ``evaluatingBiomedClIP_IUXRAY.ipynb``, Nafiz95/BioVLM_Eval_CXR):

  * head: weight Xavier-uniform (bound sqrt(6 / (D + C))), bias PyTorch's Linear default
    U(-1/sqrt(D), 1/sqrt(D)); logits = e @ W + b on the raw 512-d tower output (not normalised);
  * loss: ``binary_cross_entropy_with_logits``, mean over batch x labels, no pos_weight (the
    multilabel objective);
  * AdamW (lr 1e-4, weight decay 1e-2, betas (0.9, 0.999), eps 1e-8), batches of 24 shuffled
    each epoch (last batch partial), at most 10 epochs, CosineAnnealingLR(T_max=10) stepped per
    epoch: epoch e (from 0) trains at lr * (1 + cos(pi e / 10)) / 2;
  * after each epoch the validation BCE, which the reference averages over batches of 24 (so the
    last, smaller batch weighs as much as a full one), decides: an improvement of more than 1e-4
    keeps the head and resets the patience, otherwise patience + 1 and a stop at 5; the best
    head is reloaded at the end. Without validation data all epochs run and the last head is
    kept.

The tower is frozen and the reference feeds it the eval transform, so the features are constant
and training on features encoded once is the same computation. The reference runs the tower
under fp16 autocast on CUDA; the features here are float32. Training runs in ``fit``, inside the
method, because the engine's "fit" stage gives it exactly what this loop needs: the training and
validation features.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from biomedjax import objectives
from biomedjax.methods import options
from biomedjax.methods.base import Backbone, Method, Task


@dataclasses.dataclass(frozen=True)
class Options:
  lr: float = 1e-4
  weight_decay: float = 1e-2
  batch_size: int = 24
  epochs: int = 10
  t_max: int = 10           # CosineAnnealingLR period, in epochs
  patience: int = 5
  min_delta: float = 1e-4
  seed: int = 42            # head init and batch order (the reference seeds everything with 42)


def init_head(rng, dim: int, num_labels: int) -> dict:
  """Xavier-uniform kernel (D, C) and PyTorch-default bias U(-1/sqrt(D), 1/sqrt(D))."""
  k1, k2 = jax.random.split(rng)
  bound = math.sqrt(6.0 / (dim + num_labels))
  kernel = jax.random.uniform(k1, (dim, num_labels), jnp.float32, -bound, bound)
  b = 1.0 / math.sqrt(dim)
  return {"kernel": kernel, "bias": jax.random.uniform(k2, (num_labels,), jnp.float32, -b, b)}


def head_logits(head: dict, features):
  return features @ head["kernel"] + head["bias"]


def bce_with_logits(logits, targets):
  """Mean over every entry of -[y log sigmoid(z) + (1 - y) log sigmoid(-z)] (torch's form)."""
  return objectives.sigmoid_bce(logits, targets)


def epoch_lr(base: float, epoch: int, t_max: int) -> float:
  """CosineAnnealingLR (eta_min 0) after ``epoch`` per-epoch steps."""
  return base * (1 + math.cos(math.pi * epoch / t_max)) / 2


def _adamw(learning_rate, weight_decay):
  """torch.optim.AdamW: p <- p - lr (m_hat / (sqrt(v_hat) + eps) + wd p)."""
  return optax.adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay)


# The learning rate lives in the optimizer state, set per epoch, so one compiled step serves all.
_TX = optax.inject_hyperparams(_adamw)(learning_rate=0.0, weight_decay=0.0)


def _data_loss(objective):
  return (lambda z, y: objective(z, y)[0]) if objective is not None else bce_with_logits


def train_head(train_x, train_y, val_x=None, val_y=None, opts: Options = Options(),
               head: dict | None = None, orders=None, objective=None
               ) -> tuple[dict, list[dict]]:
  """The reference's training loop on features -> (best head, per-epoch history).

  ``objective(logits, labels) -> (loss, metrics)`` is the data term (default: sigmoid BCE).
  ``orders`` optionally gives each epoch's batch order (for parity tests); by default a
  permutation per epoch from ``np.random.default_rng(opts.seed)``. The validation loss is the
  mean over batches of ``batch_size`` of each batch's loss, as the reference averages it.
  """
  train_x, val_x = np.asarray(train_x, np.float32), val_x
  train_y = np.asarray(train_y)
  if train_x.ndim != 2 or len(train_y) != len(train_x):
    raise ValueError(f"train features {train_x.shape} and labels {train_y.shape} must be "
                     "(N, D) and (N, ...)")
  num_out = train_y.shape[1] if train_y.ndim == 2 else int(train_y.max()) + 1
  if head is None:
    head = init_head(jax.random.key(opts.seed), train_x.shape[1], num_out)
  loss_fn = _data_loss(objective)

  @jax.jit
  def step(head, opt_state, x, y):
    loss, grads = jax.value_and_grad(lambda h: loss_fn(head_logits(h, x), y))(head)
    updates, opt_state = _TX.update(grads, opt_state, head)
    return optax.apply_updates(head, updates), opt_state, loss

  eval_loss = jax.jit(lambda h, x, y: loss_fn(head_logits(h, x), y))
  opt_state = _TX.init(head)
  opt_state.hyperparams["weight_decay"] = jnp.float32(opts.weight_decay)
  rng = np.random.default_rng(opts.seed)
  best, best_head, bad_epochs, history = math.inf, head, 0, []
  bs = opts.batch_size
  for epoch in range(opts.epochs):
    order = orders[epoch] if orders is not None else rng.permutation(len(train_x))
    lr = jnp.float32(epoch_lr(opts.lr, epoch, opts.t_max))
    opt_state.hyperparams["learning_rate"] = lr
    losses = []
    for i in range(0, len(order), bs):
      idx = order[i:i + bs]
      head, opt_state, loss = step(head, opt_state, train_x[idx], train_y[idx])
      losses.append(float(loss))
    record = {"epoch": epoch + 1, "lr": float(lr), "train_loss": float(np.mean(losses))}
    if val_x is not None:
      vx, vy = np.asarray(val_x, np.float32), np.asarray(val_y)
      val = float(np.mean([float(eval_loss(head, vx[i:i + bs], vy[i:i + bs]))
                           for i in range(0, len(vx), bs)]))
      record["val_loss"] = val
      if val < best - opts.min_delta:
        best, best_head, bad_epochs = val, head, 0
        record["saved"] = True
      else:
        bad_epochs += 1
    history.append(record)
    if val_x is not None and bad_epochs >= opts.patience:
      break
  return (best_head if val_x is not None else head), history


class HeadProbe(Method):
  """A linear head trained in ``fit`` by the reference's loop (see the module docstring).

  Not packed (``packs_runs`` False): the loop stops early on a host-side patience counter and
  keeps its history on the method object, so runs cannot share one vmapped program."""
  name = "head_probe"
  options_type = Options
  study_name = "lp"  # its column in the IU-Xray study's tables
  inputs = "features"
  stages = ("fit",)
  task_kinds = ("multiclass", "multilabel")

  def __init__(self, backbone: Backbone, task: Task, opts: Options, objective=None):
    super().__init__(backbone, task, opts, objective)
    self.history: list[dict] = []

  def fit(self, frozen, train, val=None) -> dict:
    val_x, val_y = (val.features, val.labels) if val is not None else (None, None)
    head = init_head(jax.random.key(self.opts.seed), train.features.shape[1],
                     self.task.num_classes)
    head, self.history = train_head(train.features, train.labels, val_x, val_y, self.opts,
                                    head=head, objective=self.objective)
    return {"head": head}

  def logits(self, trainable, frozen, features):
    return head_logits(trainable["head"], features)


def build(backbone: Backbone, task: Task, cfg=None, objective=None) -> HeadProbe:
  return HeadProbe(backbone, task, options.read(Options, cfg, "head_probe"), objective)
