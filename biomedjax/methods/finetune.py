"""Full fine-tuning: the image tower and a Linear(D, C) head, trained with the run's objective.

The IU-Xray study (Sadman et al., BIOKDD'25; ``train_eval_biomedclip(mode="finetune")`` in
``evaluatingBiomedClIP_IUXRAY.ipynb``, Nafiz95/BioVLM_Eval_CXR): logits = head(visual(x)), with
``visual`` the whole BiomedCLIP image tower (ViT trunk + 768->512 projection, output not
normalised) and the head initialised as ``head_probe`` (Xavier-uniform weight, PyTorch-default
bias). Only ``visual`` and the head train; the text tower and the logit scale stay frozen.
The data term is ``config.loss`` (sigmoid BCE on a multilabel task, as the reference).

Two optimisation schedules (``loop``):

  * ``"notebook"`` (reference, default): the notebook's warm-up test is commented out, so at the
    start of *every* epoch it builds a fresh AdamW(all parameters, lr = 1e-4 x 0.1, weight decay
    1e-2) and a CosineAnnealingLR that is stepped once, after the epoch: the learning rate is a
    constant 1e-5, the tower trains from the first step, and Adam's moments and step count start
    from zero each epoch. ``reset_every`` reproduces that.
  * ``"paper"``: what the paper describes: ``warmup_epochs`` (1) epochs training the head alone
    at 1e-4, then the tower unfrozen and one AdamW over everything, built once, at lr x 0.1 with a
    per-epoch cosine over the remaining epochs (CosineAnnealingLR(T_max = epochs - warmup)).

The base learning rate, weight decay and epoch count are ``config.optim``'s (lr 1e-4, weight decay
1e-2, 10 epochs in configs/finetune.py); the loop decides how they are used (``optimizer``).
Batches of 24; early stopping on the validation loss (min delta 1e-4, patience 5) with the best
epoch reloaded is the engine's ``config.train.early_stopping``. Mixed precision is the backbone's
``config.model.compute_dtype="bfloat16"``: the tower computes in bf16 from float32 master
weights (the reference uses fp16 autocast with a GradScaler, which bf16's float32-sized exponent
makes unnecessary); the head and the loss are float32.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from biomedjax.methods import options
from biomedjax.methods.base import Backbone, Method, Task
from biomedjax.methods.head_probe import head_logits, init_head

LOOPS = ("notebook", "paper")


@dataclasses.dataclass(frozen=True)
class Options:
  loop: str = "notebook"
  lr_factor: float = 0.1        # the tower phase's lr = config.optim.lr x lr_factor
  warmup_epochs: int = 1        # "paper": head-only epochs at config.optim.lr
  seed: int = 42                # head init


class ResetState(NamedTuple):
  count: jax.Array
  inner: optax.OptState


def reset_every(inner: optax.GradientTransformation, steps: int) -> optax.GradientTransformation:
  """``inner`` re-initialised every ``steps`` updates (a fresh optimizer per epoch)."""

  def init_fn(params):
    return ResetState(jnp.zeros((), jnp.int32), inner.init(params))

  def update_fn(updates, state, params=None):
    fresh = inner.init(params)
    state_in = jax.tree.map(lambda f, s: jnp.where(state.count % steps == 0, f, s), fresh,
                            state.inner)
    updates, new_inner = inner.update(updates, state_in, params)
    return updates, ResetState(state.count + 1, new_inner)

  return optax.GradientTransformation(init_fn, update_fn)


class SwitchState(NamedTuple):
  count: jax.Array
  first: optax.OptState
  second: optax.OptState


def switch_at(first: optax.GradientTransformation, second: optax.GradientTransformation,
              boundary: int) -> optax.GradientTransformation:
  """``first`` for the first ``boundary`` updates, then ``second`` from its own fresh state."""

  def init_fn(params):
    return SwitchState(jnp.zeros((), jnp.int32), first.init(params), second.init(params))

  def update_fn(updates, state, params=None):
    def run_first(_):
      u, s = first.update(updates, state.first, params)
      return u, s, state.second

    def run_second(_):
      u, s = second.update(updates, state.second, params)
      return u, state.first, s

    u, s1, s2 = jax.lax.cond(state.count < boundary, run_first, run_second, None)
    return u, SwitchState(state.count + 1, s1, s2)

  return optax.GradientTransformation(init_fn, update_fn)


def _adamw(lr, cfg):
  return optax.adamw(lr, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999), eps=cfg.get("eps", 1e-8),
                     weight_decay=cfg["weight_decay"])


def epoch_cosine(base: float, t_max: int, steps_per_epoch: int):
  """Per-step lr of a CosineAnnealingLR stepped once per epoch."""
  return lambda step: base * (1 + jnp.cos(jnp.pi * (step // steps_per_epoch) / t_max)) / 2


def make_optimizer(opts: Options, optim_cfg, steps_per_epoch: int):
  """(optax transform, step -> lr) of ``opts.loop`` over the trainable {"visual", "head"}.

  ``optim_cfg``: a mapping with ``lr``, ``weight_decay``, ``epochs`` (and optionally ``b1``,
  ``b2``, ``eps``); AdamW as ``torch.optim.AdamW``.
  """
  cfg = dict(optim_cfg.items()) if hasattr(optim_cfg, "items") else dict(optim_cfg)
  if opts.loop not in LOOPS:
    raise ValueError(f"config.method.loop={opts.loop!r}: use one of {LOOPS}")
  tower_lr = cfg["lr"] * opts.lr_factor
  if opts.loop == "notebook":
    return (reset_every(_adamw(tower_lr, cfg), steps_per_epoch),
            lambda step: jnp.full(jnp.shape(step), tower_lr))
  warm = opts.warmup_epochs * steps_per_epoch
  if not 0 < opts.warmup_epochs < cfg["epochs"]:
    raise ValueError(f"config.method.warmup_epochs={opts.warmup_epochs} must be in "
                     f"[1, config.optim.epochs={cfg['epochs']})")
  head_only = optax.multi_transform(
      {"train": _adamw(cfg["lr"], cfg), "frozen": optax.set_to_zero()},
      lambda tree: {k: jax.tree.map(lambda _: "frozen" if k == "visual" else "train", v)
                    for k, v in tree.items()})
  cosine = epoch_cosine(tower_lr, cfg["epochs"] - opts.warmup_epochs, steps_per_epoch)
  later = _adamw(cosine, cfg)
  return (switch_at(head_only, later, warm),
          lambda step: jnp.where(step < warm, cfg["lr"], cosine(step - warm)))


class FineTune(Method):
  """Image tower + head, trained on pixels (see the module docstring)."""
  name = "finetune"
  options_type = Options
  study_name = "ft"  # its column in the IU-Xray study's tables
  lr_packs = False  # ``optimizer`` below switches optimizers mid-run: no traced LR
  inputs = "pixels"
  stages = ("train",)
  trainable_backbone = ("visual",)
  task_kinds = ("multiclass", "multilabel")

  def __init__(self, backbone: Backbone, task: Task, opts: Options, objective=None):
    if opts.loop not in LOOPS:
      raise ValueError(f"config.method.loop={opts.loop!r}: use one of {LOOPS}")
    super().__init__(backbone, task, opts, objective)

  def init(self, rng, frozen) -> dict:
    """The tower's pretrained weights (copied from the backbone) and a fresh head."""
    head = init_head(jax.random.key(self.opts.seed), self.backbone.cfg.embed_dim,
                     self.task.num_classes)
    return {"visual": frozen["backbone"]["visual"], "head": head}

  def features(self, visual, frozen, images):
    """The (trained) tower's output (B, D), float32; computed in the backbone's dtype."""
    return self.backbone.image_features({**frozen["backbone"], "visual": visual}, images)

  def logits(self, trainable, frozen, images):
    return head_logits(trainable["head"], self.features(trainable["visual"], frozen, images))

  def optimizer(self, optim_cfg, steps_per_epoch: int):
    return make_optimizer(self.opts, optim_cfg, steps_per_epoch)


def build(backbone: Backbone, task: Task, cfg=None, objective=None) -> FineTune:
  return FineTune(backbone, task, options.read(Options, cfg, "finetune"), objective)
