"""Full fine-tuning for multi-label tasks: the image tower and a Linear(D, C) head, BCE-trained.

The IU-Xray study (Sadman et al., BIOKDD'25; ``train_eval_biomedclip(mode="finetune")`` in
``evaluatingBiomedClIP_IUXRAY.ipynb``, Nafiz95/BioVLM_Eval_CXR): logits = head(visual(x)), with
``visual`` the whole BiomedCLIP image tower (ViT trunk + 768->512 projection, output not
normalised) and the head initialised as ``linear_head`` (Xavier-uniform weight, PyTorch-default
bias). Only ``visual`` and the head train; the text tower and the logit scale stay frozen.

Two optimisation schedules (``loop``):

  * ``"notebook"`` (reference, default): the notebook's warm-up test is commented out, so at the
    start of *every* epoch it builds a fresh AdamW(all parameters, lr = 1e-4 x 0.1, weight decay
    1e-2) and a CosineAnnealingLR that is stepped once, after the epoch: the learning rate is a
    constant 1e-5, the tower trains from the first step, and Adam's moments and step count start
    from zero each epoch. ``reset_every`` reproduces that.
  * ``"paper"``: what the paper describes: ``warmup_epochs`` (1) epochs training the head alone
    at 1e-4, then the tower unfrozen and one AdamW over everything, built once, at lr x 0.1 with a
    per-epoch cosine over the remaining epochs (CosineAnnealingLR(T_max = epochs - warmup)).

Both train with BCE-with-logits (mean over batch x labels), batches of 24, at most 10 epochs,
early stopping on the validation BCE (min delta 1e-4, patience 5) and the best-val weights reloaded
for test. Mixed precision: the tower runs in ``compute_dtype`` (bfloat16 by default; the reference
uses fp16 autocast with a GradScaler, which bf16's fp32-sized exponent makes unnecessary) on
float32 master weights; the head and the loss are float32.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from biomedjax.methods import options
from biomedjax.methods.linear_head import bce_with_logits, head_logits, init_head
from biomedjax.models.clip import CLIP

LOOPS = ("notebook", "paper")


@dataclasses.dataclass(frozen=True)
class Options:
  loop: str = "notebook"
  lr: float = 1e-4              # the head-only warm-up lr ("paper"); the tower phase uses lr_factor
  lr_factor: float = 0.1
  weight_decay: float = 1e-2
  batch_size: int = 24
  epochs: int = 10
  warmup_epochs: int = 1        # "paper": head-only epochs
  patience: int = 5
  min_delta: float = 1e-4
  compute_dtype: str = "bfloat16"   # the tower's forward/backward dtype; "float32" turns it off
  seed: int = 42


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


def _adamw(lr, weight_decay):
  return optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay)


def epoch_cosine(base: float, t_max: int, steps_per_epoch: int):
  """Per-step lr of a CosineAnnealingLR stepped once per epoch."""
  return lambda step: base * (1 + jnp.cos(jnp.pi * (step // steps_per_epoch) / t_max)) / 2


def make_optimizer(opts: Options, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optimizer of ``opts.loop`` over the trainable {"visual": ..., "head": ...}."""
  if opts.loop not in LOOPS:
    raise ValueError(f"config.method.loop={opts.loop!r}: use one of {LOOPS}")
  tower_lr = opts.lr * opts.lr_factor
  if opts.loop == "notebook":
    return reset_every(_adamw(tower_lr, opts.weight_decay), steps_per_epoch)
  head_only = optax.multi_transform(
      {"train": _adamw(opts.lr, opts.weight_decay), "frozen": optax.set_to_zero()},
      lambda tree: {k: jax.tree.map(lambda _: "frozen" if k == "visual" else "train", v)
                    for k, v in tree.items()})
  later = _adamw(epoch_cosine(tower_lr, opts.epochs - opts.warmup_epochs, steps_per_epoch),
                 opts.weight_decay)
  return switch_at(head_only, later, opts.warmup_epochs * steps_per_epoch)


class FineTune:
  """Image tower + head, trained on pixels (see the module docstring)."""
  inputs = "pixels"
  stages = ("train",)
  trainable_backbone = ("visual",)
  task_kinds = ("multilabel",)

  def __init__(self, backbone, task, opts: Options, objective=None):
    if opts.loop not in LOOPS:
      raise ValueError(f"config.method.loop={opts.loop!r}: use one of {LOOPS}")
    self.backbone, self.task, self.opts, self.objective = backbone, task, opts, objective
    self.dtype = jnp.dtype(opts.compute_dtype)

  def prepare(self, backbone_params) -> dict:
    return {}

  def init(self, rng, frozen) -> dict:
    """The tower's pretrained weights (copied from the backbone) and a fresh head."""
    visual = frozen["backbone"]["visual"]
    head = init_head(jax.random.key(self.opts.seed), self.backbone.cfg.embed_dim,
                     len(self.task.classnames))
    return {"visual": visual, "head": head}

  def features(self, visual, frozen, images):
    """Tower output (B, D) in float32, computed in ``compute_dtype`` from float32 weights."""
    x = self.backbone.normalize(images).astype(self.dtype)
    params = {"visual": jax.tree.map(lambda p: p.astype(self.dtype), visual),
              "logit_scale": frozen["backbone"]["logit_scale"]}  # declared in CLIP.setup
    out = self.backbone.module.apply({"params": params}, x, method=CLIP.encode_image)
    return out.astype(jnp.float32)

  def logits(self, trainable, frozen, images):
    return head_logits(trainable["head"], self.features(trainable["visual"], frozen, images))

  def loss(self, trainable, frozen, batch, rng):
    logits = self.logits(trainable, frozen, batch["image"])
    if self.objective is not None:
      return self.objective(logits, batch["label"])
    loss = bce_with_logits(logits, batch["label"])
    return loss, {"bce": loss}

  def optimizer(self, steps_per_epoch: int) -> optax.GradientTransformation:
    return make_optimizer(self.opts, steps_per_epoch)


def build(backbone, task, cfg=None, objective=None) -> FineTune:
  return FineTune(backbone, task, options.read(Options, cfg, "finetune"), objective)
