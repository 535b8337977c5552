"""Tip-Adapter-F as BiomedCoOp's few-shot harness runs it (the shipped config's ``finetune: True``).

Reference: HealthX-Lab/BiomedCoOp ``trainers/TipAdapter/tip_adapter_biomedclip.py`` (branch
``finetune == True``), ``trainers/utils.py``, ``configs/trainers/TiP_Adapter/few_shot.yaml``.

Trainable: the cache key matrix ``W`` (n, d), initialised to the normalised cache keys of
Tip-Adapter and never re-normalised. Forward on a normalised feature f:
``z = s f T^T + alpha * exp(-(beta - beta f W^T)) V`` (s = 85.2323, V the one-hot cache values).
Training: mean cross-entropy on augmented training features (a fresh view every epoch), torch
AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-4, decoupled weight decay 0.01) with a cosine to 0
over 20 iterations stepped per iteration (``lr_t = 1e-3 (1 + cos(pi t / 20)) / 2``), full batch.

The procedure the reference executes (tip_adapter_biomedclip.py:95-197, ``search_init_hp``
:199-241):

1. For alpha0 in 0, 1, ..., 9: ``W`` trains 20 epochs with beta = 1, alpha = alpha0 (its own
   AdamW and cosine), then scores val accuracy with the same (beta, alpha); the first strictly
   better alpha0 (starting from 0 % accuracy) is kept. Quirk (``shared_keys=True``, the
   default): ``adapter.weight = nn.Parameter(cache_keys.t())`` (:97, :201) wraps a VIEW of the
   cache keys, and AdamW updates it in place, so the ten fine-tunes run IN SEQUENCE ON ONE
   MATRIX: alpha0 = a starts from the matrix alpha0 = 0..a-1 left and is scored on its own
   result, and the final ``W`` is the matrix after all ten, whichever alpha0 wins (the chosen
   module's parameter is that same storage). ``shared_keys=False`` runs what the method's
   description implies instead: ten independent fine-tunes from the original keys (vmapped),
   keeping the winning alpha0's own ``W``. With alpha0 = 0 the gradient is 0 but AdamW's decay
   still shrinks ``W`` by ~1.05e-4 (reproduced).
2. The "main" 20-epoch training (:124-174) is a no-op: its optimiser (:99) holds the first
   adapter's parameter, which never receives a gradient once an alpha0 was chosen. Skipped by
   default; ``second_stage=True`` runs the intended one (a fresh AdamW + cosine for 20 more
   epochs from the chosen ``W``, reloading the best-val epoch, strict >). Edge case reproduced:
   when no alpha0 beats 0 % val accuracy, the first adapter is kept and the main training DOES
   step it, at (init_beta, init_alpha) = (1, 1), from the matrix the ten fine-tunes left
   (``shared_keys``; the original keys otherwise), keeping the best-val epoch (strict >). When no
   epoch beats 0 % either, the reference's ``torch.load`` of best_F (:174) reads a file this run
   never wrote (a stale one, or FileNotFoundError); here the matrix the main training started
   from is kept.
3. The (beta, alpha) grid search of Tip-Adapter (200 x 200, same tie rule) on val with the
   fine-tuned ``W``; the test logits use that (beta*, alpha*), not the training pair.

Training features come as ``views`` (V, n, d), unnormalised: the first ``augment_epochs`` build
the cache; of the rest (all of them if there is no rest), epoch e of alpha0 number a uses view
``(a * epochs + e) % V'`` and epoch e of the main training ``(10 * epochs + e) % V'``, so with
1 + 10 * 20 views every fine-tune epoch sees its own augmentation as in the reference, and with
one view every epoch reuses it.

Several seeds of a setting (``fit_runs``): steps 1-2 of every run (its own views) are one
vmapped program, step 3's grids of all runs another. Step 2 is computed for both of its cases and
one is selected, so the procedure has no host-side branch.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from biomedjax.methods import base, harness, options
from biomedjax.methods import tip_adapter as tip


@dataclasses.dataclass(frozen=True)
class Options:
  """The reference's TiP_Adapter/few_shot.yaml (finetune branch)."""
  lr: float = 1e-3
  epochs: int = 20                # train_epoch
  batch_size: int = 256           # every dataset here fits one full batch
  eps: float = 1e-4
  weight_decay: float = 0.01      # torch AdamW's default, implicit in the reference
  betas: tuple[float, float] = (0.9, 0.999)
  init_beta: float = 1.0
  init_alpha: float = 1.0         # the main training's alpha when no alpha0 beats 0 %
  init_alpha_scale: int = 10      # alpha0 in range(init_alpha_scale)
  second_stage: bool = False      # True: the intended second fine-tune (the reference's is a no-op)
  shared_keys: bool = True        # the reference's alpha0 fine-tunes in sequence on ONE matrix;
                                  # False: independent fine-tunes from the original keys
  augment_epochs: int = 1         # views averaged into the initial cache keys
  search_scale: tuple[float, float] = (50.0, 50.0)
  search_step: tuple[int, int] = (200, 200)
  scale: float = tip.SCALE
  max_views: int = 0              # 0: the reference's 1 + 10 x 20 augmented passes; n: n, cycled


def cosine_lr(t, lr: float, total: int):
  """torch CosineAnnealingLR(T_max=total, eta_min=0) stepped per iteration: lr at iteration t."""
  return 0.5 * lr * (1.0 + jnp.cos(jnp.pi * t / total))


def adamw_step(p, g, m, v, t, lr, opts: Options):
  """One torch.optim.AdamW step (t counts from 1), in torch's operation order."""
  b1, b2 = opts.betas
  p = p * (1.0 - lr * opts.weight_decay)
  m = b1 * m + (1.0 - b1) * g
  v = b2 * v + (1.0 - b2) * g * g
  bc1, bc2 = 1.0 - b1 ** t, 1.0 - b2 ** t
  denom = jnp.sqrt(v) / jnp.sqrt(bc2) + opts.eps
  return p - (lr / bc1) * (m / denom), m, v


def adapter_logits(W, feats_n, text, values, beta, alpha, scale):
  return scale * feats_n @ text.T + tip.cache_logits(feats_n @ W.T, values, beta, alpha)


def _loss(W, feats_n, labels, text, values, beta, alpha, scale):
  logits = adapter_logits(W, feats_n, text, values, beta, alpha, scale)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _correct(W, feats_n, labels, text, values, beta, alpha, scale):
  logits = adapter_logits(W, feats_n, text, values, beta, alpha, scale)
  return (logits.argmax(-1) == labels).sum()


def finetune(W, views_n, view_index, labels, text, values, beta, alpha, opts: Options,
             val=None):
  """``opts.epochs`` full-batch AdamW steps from ``W``; epoch e uses ``views_n[view_index[e]]``.

  Returns (final W, per-epoch W stack or None, per-epoch val correct counts or None): with
  ``val = (feats_n, labels)`` the epochs are scored for best-val selection.
  """
  def epoch(carry, e):
    W, m, v = carry
    feats = views_n[view_index[e]]
    g = jax.grad(_loss)(W, feats, labels, text, values, beta, alpha, opts.scale)
    W, m, v = adamw_step(W, g, m, v, e + 1, cosine_lr(e, opts.lr, opts.epochs), opts)
    out = None
    if val is not None:
      out = (W, _correct(W, *val, text, values, beta, alpha, opts.scale))
    return (W, m, v), out

  zeros = jnp.zeros_like(W)
  (W, _, _), out = jax.lax.scan(epoch, (W, zeros, zeros), jnp.arange(opts.epochs))
  return (W, None, None) if out is None else (W, *out)


def _best_epoch(W0, stack, correct):
  """Best-val epoch, strict > from 0 correct (the first best); ``W0`` when no epoch scores
  above 0. Traceable."""
  return jnp.where(correct.max() > 0, stack[jnp.argmax(correct)], W0)


@dataclasses.dataclass
class FitResult:
  W: np.ndarray              # (n, d) fine-tuned keys
  values: np.ndarray         # (n, N)
  alpha0: float              # the alpha0 chosen in step 1 (-1 if none beat 0 %)
  alpha0_correct: np.ndarray  # val correct count of every alpha0
  beta: float                # searched beta* (step 3)
  alpha: float               # searched alpha*
  val_correct: int


def _alpha0_search(keys, views_n, index, labels, val_n, val_y, text, values, opts: Options):
  """Step 1 -> (the chosen alpha0's W, the main training's start, val correct per alpha0).

  ``shared_keys``: one matrix carried through the ten fine-tunes (a scan); both results are
  the matrix the ten left. Otherwise the ten start from ``keys`` (a vmap) and the main
  training would start from ``keys``."""
  alphas = jnp.arange(opts.init_alpha_scale, dtype=jnp.float32)

  def one(W, alpha, idx):
    W, _, _ = finetune(W, views_n, idx, labels, text, values, opts.init_beta, alpha, opts)
    return W, _correct(W, val_n, val_y, text, values, opts.init_beta, alpha, opts.scale)

  if opts.shared_keys:
    W, correct = jax.lax.scan(lambda W, x: one(W, *x), keys, (alphas, index))
    return W, W, correct
  Ws, correct = jax.vmap(one, in_axes=(None, 0, 0))(keys, alphas, index)
  return Ws[jnp.argmax(correct)], keys, correct


def _procedure(views, labels, val_n, val_y, text, num_classes: int, opts: Options):
  """Steps 1 and 2 of one run, traceable (so several runs vmap):
  -> (W, values, alpha0 (-1: none beat 0 %), val correct per alpha0).

  Both branches of step 2 are computed and one is selected (``jnp.where``): the extra 20
  full-batch epochs cost milliseconds and keep the whole procedure one program."""
  keys, values = tip.build_cache(views[:opts.augment_epochs], labels, num_classes)
  if views.shape[0] > opts.augment_epochs:  # the fine-tunes get their own passes
    views = views[opts.augment_epochs:]
  views_n = tip.normalize(views)
  n_views = views.shape[0]
  index = (jnp.arange(opts.init_alpha_scale)[:, None] * opts.epochs
           + jnp.arange(opts.epochs)[None]) % n_views
  main_index = (jnp.arange(opts.epochs) + opts.init_alpha_scale * opts.epochs) % n_views
  W, main_start, correct = _alpha0_search(keys, views_n, index, labels, val_n, val_y, text,
                                          values, opts)
  a = jnp.argmax(correct)  # the first strictly better alpha0
  if opts.second_stage:
    _, stack, ep_correct = finetune(W, views_n, main_index, labels, text, values,
                                    opts.init_beta, a.astype(jnp.float32), opts, (val_n, val_y))
    W = _best_epoch(W, stack, ep_correct)
  # Edge case: no alpha0 beats 0 %: the "main" training does step the first adapter's matrix,
  # at (init_beta, init_alpha), and the best-val epoch is kept.
  _, stack, ep_correct = finetune(main_start, views_n, main_index, labels, text, values,
                                  opts.init_beta, opts.init_alpha, opts, (val_n, val_y))
  found = correct.max() > 0
  W = jnp.where(found, W, _best_epoch(main_start, stack, ep_correct))
  return W, values, jnp.where(found, a.astype(jnp.float32), -1.0), correct


_procedure_jit = jax.jit(_procedure, static_argnums=(5, 6))


@functools.partial(jax.jit, static_argnums=(5, 6))
def _procedure_runs(views, labels, val_n, val_y, text, num_classes, opts):
  """``_procedure`` vmapped over runs (leading axis of ``views`` and ``labels``)."""
  return jax.vmap(lambda v, y: _procedure(v, y, val_n, val_y, text, num_classes, opts))(
      views, labels)


def _inputs(train_views, train_labels, val_feats, val_labels, text, opts):
  tip.check_val(val_feats, val_labels, "tip_adapter_f")
  views = tip.views_of(train_views)
  n = views.shape[1]
  if n > opts.batch_size:
    raise ValueError(f"tip_adapter_f: {n} training images exceed batch_size={opts.batch_size}; "
                     "this implementation trains full-batch, as every reference dataset does")
  return (views, jnp.asarray(train_labels, jnp.int32),
          tip.normalize(jnp.asarray(val_feats, jnp.float32)),
          jnp.asarray(val_labels, jnp.int32), jnp.asarray(text, jnp.float32))


def _search(W, values, alpha0, correct, val_n, val_y, text, opts) -> FitResult:
  """Step 3: the (beta, alpha) grid search of Tip-Adapter on val with the fine-tuned keys."""
  search_opts = tip.Options(search_scale=opts.search_scale, search_step=opts.search_step,
                            scale=opts.scale)
  result = tip.search(val_n, val_y, text, val_n @ W.T, values, search_opts)
  return FitResult(np.asarray(W), np.asarray(values), float(alpha0), np.asarray(correct),
                   result.beta, result.alpha, result.best_correct)


def _search_runs(W, values, alpha0, correct, val_n, val_y, text, opts) -> list[FitResult]:
  """Step 3 of several runs (leading axis of W, values, alpha0, correct): the grids of all runs
  in one vmapped evaluation, then the first-best rule per run."""
  tip.check_val(val_n, val_y, "tip_adapter_f search")
  betas = tip.grid(opts.search_scale[0], opts.search_step[0])
  alphas = tip.grid(opts.search_scale[1], opts.search_step[1])
  counts = np.asarray(tip.search_runs(opts.scale * val_n @ text.T,
                                      jnp.einsum("md,rnd->rmn", val_n, W), values, val_y,
                                      jnp.asarray(betas), jnp.asarray(alphas)))
  out = []
  for r in range(len(counts)):
    result = tip.first_best(counts[r], betas, alphas)
    out.append(FitResult(np.asarray(W[r]), np.asarray(values[r]), float(alpha0[r]),
                         np.asarray(correct[r]), result.beta, result.alpha, result.best_correct))
  return out


def fit_tip_adapter_f(train_views, train_labels, val_feats, val_labels, text, num_classes: int,
                      opts: Options = Options()) -> FitResult:
  """Steps 1 (vmapped alpha0 fine-tunes), 2 (optional or edge case) and 3 (grid search)."""
  views, labels, val_n, val_y, text = _inputs(train_views, train_labels, val_feats, val_labels,
                                              text, opts)
  W, values, alpha0, correct = _procedure_jit(views, labels, val_n, val_y, text, num_classes,
                                              opts)
  return _search(W, values, alpha0, correct, val_n, val_y, text, opts)


def fit_tip_adapter_f_runs(train_views: list, train_labels: list, val_feats, val_labels, text,
                           num_classes: int, opts: Options = Options()) -> list[FitResult]:
  """``fit_tip_adapter_f`` of several runs (their own views and labels, shared val): steps 1-2
  of every run in one vmapped program, then the runs' searches in another."""
  inputs = [_inputs(v, y, val_feats, val_labels, text, opts)
            for v, y in zip(train_views, train_labels)]
  _, _, val_n, val_y, text = inputs[0]
  W, values, alpha0, correct = _procedure_runs(jnp.stack([i[0] for i in inputs]),
                                               jnp.stack([i[1] for i in inputs]), val_n, val_y,
                                               text, num_classes, opts)
  return _search_runs(W, values, alpha0, correct, val_n, val_y, text, opts)


def read_options(cfg) -> Options:
  opts = options.read(Options, cfg, "tip_adapter_f")
  return dataclasses.replace(opts, search_scale=tuple(opts.search_scale),
                             search_step=tuple(int(s) for s in opts.search_step),
                             betas=tuple(opts.betas))


class TipAdapterF(base.Method):
  """The whole procedure (alpha0 fine-tunes, optional second stage, final search) runs in ``fit``
  on cached augmented views: the reference searches (beta, alpha) AFTER training, which a
  generic "train" stage followed by eval cannot express."""
  name = "tip_adapter_f"
  read_options = staticmethod(read_options)
  harness_protocol = True  # BiomedCoOp's adapter harness (its reported std convention)
  inputs = "features"
  stages = ("fit",)
  packs_runs = True

  @property
  def fit_views(self) -> int:
    """Cache passes + one fresh pass per epoch of each alpha0 fine-tune (as the reference)."""
    extra = self.opts.epochs if self.opts.second_stage else 0
    full = self.opts.augment_epochs + self.opts.init_alpha_scale * self.opts.epochs + extra
    return min(full, self.opts.max_views) if self.opts.max_views > 0 else full

  def prepare(self, backbone_params) -> dict:
    return {"text_features": harness.text_features(self, backbone_params)}

  def fit(self, frozen, train, val, rng=None) -> dict:
    n_cls = self.task.num_classes
    harness.check_fit_inputs(train, val, n_cls, self.name)
    views = harness.train_views(train)
    r = fit_tip_adapter_f(views, train.labels, val.features, val.labels,
                          frozen["text_features"], n_cls, self.opts)
    return {"W": jnp.asarray(r.W), "values": jnp.asarray(r.values),
            "beta": jnp.float32(r.beta), "alpha": jnp.float32(r.alpha)}

  def fit_runs(self, frozen, trains, val, rngs) -> list:
    """Every run's ten alpha0 fine-tunes (and step 2) as one vmapped program; then the searches."""
    n_cls = self.task.num_classes
    for t in trains:
      harness.check_fit_inputs(t, val, n_cls, self.name)
    rs = fit_tip_adapter_f_runs([harness.train_views(t) for t in trains],
                                [t.labels for t in trains], val.features, val.labels,
                                frozen["text_features"], n_cls, self.opts)
    return [{"W": jnp.asarray(r.W), "values": jnp.asarray(r.values), "beta": jnp.float32(r.beta),
             "alpha": jnp.float32(r.alpha)} for r in rs]

  def logits(self, trainable, frozen, features):
    return adapter_logits(trainable["W"], tip.normalize(features), frozen["text_features"],
                          trainable["values"], trainable["beta"], trainable["alpha"],
                          self.opts.scale)


def build(backbone, task, cfg=None, objective=None) -> TipAdapterF:
  return TipAdapterF(backbone, task, read_options(cfg), objective)
