"""Optimizer and learning-rate schedule of the reference (Dassl), as an optax chain.

The published numbers come from Dassl's trainer, so the update rule has to be Dassl's, not optax's
nearest default:

* **SGD** is ``torch.optim.SGD(lr, momentum=0.9, weight_decay=5e-4)``, no Nesterov, no dampening.
  Torch adds ``weight_decay * param`` to the gradient *before* the momentum buffer (coupled L2),
  and the buffer is ``buf = momentum * buf + g`` (first step ``buf = g``), scaled by the current
  LR afterwards. That is ``add_decayed_weights -> trace -> scale_by_learning_rate`` here
  (``optax.sgd`` has no weight decay, and ``optax.adamw``-style decoupled decay differs).
* **Adam** is ``torch.optim.Adam`` (coupled L2 as for SGD); **AdamW** is ``torch.optim.AdamW``
  (decay ``lr * wd * param``, which is ``optax.adamw``).
* ``grad_clip > 0`` clips the raw gradient by global norm first (Dassl has no clipping; it is off
  by default).

**Schedule, read from Dassl's source** (``dassl/optim/lr_scheduler.py`` with the default
``OPTIM.WARMUP_RECOUNT = True``): the LR is changed once per epoch, at the end of its last batch
(CoOp-family trainers call ``update_lr`` there), so it is constant within an epoch.
``ConstantWarmupScheduler`` returns ``warmup_lr`` for epochs ``0 .. W-1`` and does *not* step its
successor meanwhile; at epoch ``W`` it hands over the successor's LR, which is still the base LR
(``CosineAnnealingLR`` at its epoch 0); from then on it steps the successor once per epoch. So

    lr(epoch e) = warmup_lr                                      if e < W
                = lr * (1 + cos(pi * (e - W) / epochs)) / 2      otherwise,

with ``epochs`` = MAX_EPOCH (the total, warmup included) as the cosine period: the cosine starts at
the base LR right after warmup, as Dassl's ConstantWarmupScheduler does, and never reaches 0
(last epoch uses ``cos(pi * (epochs - 1 - W) / epochs)``). (With ``WARMUP_RECOUNT = False`` Dassl
would instead jump the successor ahead by W epochs; no BiomedCoOp config sets that.)

``schedule="cosine_steps"``: torch's ``CosineAnnealingLR`` stepped once per *iteration* with
T = epochs * steps_per_epoch (the visual-reprogramming references, BioMedVR/AttrVR):
``lr_t = lr * (1 + cos(pi * t / T)) / 2`` for t = 0 .. T - 1, after ``warmup_epochs`` epochs at
``warmup_lr`` (0 in those references), the cosine counting t from the end of warmup.

Config block (``config.optim``), field names equal what is read here so a typo is an error:
``name`` ("sgd" | "adam" | "adamw"), ``lr``, ``momentum``, ``weight_decay``, ``epochs``,
``warmup_epochs``, ``warmup_lr``, ``schedule`` ("cosine" | "constant" | "cosine_steps"),
``grad_clip`` (0 = off),
and optionally ``b1``, ``b2``, ``eps`` for Adam/AdamW (torch defaults 0.9, 0.999, 1e-8).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

REQUIRED_FIELDS = ("name", "lr", "momentum", "weight_decay", "epochs", "warmup_epochs",
                   "warmup_lr", "schedule", "grad_clip")
OPTIONAL_FIELDS = {"b1": 0.9, "b2": 0.999, "eps": 1e-8}
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant", "cosine_steps")


def _fields(optim_cfg) -> dict:
  """The config block as a dict with optional fields filled; unknown or missing keys are errors."""
  given = dict(optim_cfg.items())
  unknown = sorted(set(given) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS))
  missing = [k for k in REQUIRED_FIELDS if k not in given]
  if unknown or missing:
    raise KeyError(f"config.optim: unknown fields {unknown}, missing fields {missing}")
  if given["name"] not in OPTIMIZERS:
    raise ValueError(f"config.optim.name={given['name']!r}; expected one of {OPTIMIZERS}")
  if given["schedule"] not in SCHEDULES:
    raise ValueError(f"config.optim.schedule={given['schedule']!r}; expected one of {SCHEDULES}")
  if given["epochs"] <= given["warmup_epochs"]:
    raise ValueError(f"config.optim.epochs={given['epochs']} must exceed "
                     f"warmup_epochs={given['warmup_epochs']}")
  return {**OPTIONAL_FIELDS, **given}


def make_schedule(cfg: dict, steps_per_epoch: int) -> Callable:
  """step -> LR, constant within each epoch (Dassl steps its scheduler once per epoch)."""
  lr, epochs, warmup = cfg["lr"], int(cfg["epochs"]), int(cfg["warmup_epochs"])
  # lr may be traced: a packed sweep builds each point's optimizer inside one program
  lr = lr if isinstance(lr, jax.Array) else float(lr)
  warmup_lr, cosine = float(cfg["warmup_lr"]), cfg["schedule"] == "cosine"

  if cfg["schedule"] == "cosine_steps":
    return _cosine_steps(lr, epochs * steps_per_epoch, warmup * steps_per_epoch, warmup_lr)

  def schedule(step):
    epoch = jnp.asarray(step) // steps_per_epoch
    if cosine:
      main = 0.5 * lr * (1.0 + jnp.cos(jnp.pi * (epoch - warmup) / epochs))
    else:
      main = jnp.full(jnp.shape(epoch), lr)
    return jnp.where(epoch < warmup, warmup_lr, main)

  return schedule


def _cosine_steps(lr: float, total: int, warmup: int, warmup_lr: float) -> Callable:
  """Per-iteration cosine from ``lr`` (at the first step after warmup) towards 0 at ``total``."""
  def schedule(step):
    t = jnp.asarray(step)
    main = 0.5 * lr * (1.0 + jnp.cos(jnp.pi * (t - warmup) / total))
    return jnp.where(t < warmup, warmup_lr, main)
  return schedule


def make_optimizer(optim_cfg, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, Callable]:
  """Returns ``(tx, schedule_fn)``; ``schedule_fn(step)`` is the LR the update at ``step`` uses."""
  if steps_per_epoch < 1:
    raise ValueError(f"steps_per_epoch={steps_per_epoch} must be >= 1")
  cfg = _fields(optim_cfg)
  schedule = make_schedule(cfg, steps_per_epoch)
  chain = []
  if cfg["grad_clip"] > 0:
    chain.append(optax.clip_by_global_norm(cfg["grad_clip"]))
  if cfg["name"] == "adamw":
    chain.append(optax.adamw(schedule, b1=cfg["b1"], b2=cfg["b2"], eps=cfg["eps"],
                             weight_decay=cfg["weight_decay"]))
    return optax.chain(*chain), schedule
  if cfg["weight_decay"]:
    chain.append(optax.add_decayed_weights(cfg["weight_decay"]))
  if cfg["name"] == "sgd":
    if cfg["momentum"]:
      chain.append(optax.trace(decay=cfg["momentum"], nesterov=False))
  else:
    chain.append(optax.scale_by_adam(b1=cfg["b1"], b2=cfg["b2"], eps=cfg["eps"]))
  chain.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*chain), schedule
