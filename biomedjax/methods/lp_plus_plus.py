"""LP++ (Huang et al., CVPR 2024) as BiomedCoOp's few-shot harness runs it (the repo's "LP2").

Reference: HealthX-Lab/BiomedCoOp ``trainers/LP2/linear_probe_p2_biomedclip.py``, a port of
``methods/linear_probe_p2.py`` of FereshteShakeri/FewShot-CLIP-Strong-Baseline, with
``compute_centroids``/``compute_centroids_alpha``/``get_one_hot`` of its ``utils.py``.

F (n, d): normalised features of ONE augmented pass over the training set; T (N, d) the
normalised single-template text features. Trainable: W (N, d), b (N,), alpha (N,).

* Logits: ``z = F W^T + b + alpha * (F T^T)``: no temperature; F T^T are raw cosines.
* Init: ``W_c = sum_{i: y_i = c} f_i`` (the per-class SUM: the division by the count is commented
  out in the reference), computed as an fp16 matmul of the fp16 one-hot and fp16 features and
  so fp16-rounded (reproduced: round f to fp16, sum, round the sum to fp16). ``b ~ U(+-1/sqrt(d))``
  (torch's Linear default). ``alpha_c = alpha0 = 250 * mean_c mean_{i: y_i = c} f_i . t_c``
  (fp64 from fp32 class means, stored fp32).
* Step sizes: ``lr_W = 4 n / lambda_max(F^T F)`` (symmetric eigenvalues of the fp32 Gram) and
  ``lr_alpha = n / (4 max_c sum_i (f_i . t_c)^2)``.
* 300 full-batch epochs. (W, b): SGD, momentum 0.9 (torch: first buffer = g), constant lr_W.
  alpha is outside the optimiser: after the (W, b) step of every epoch with (epoch + 1) % 10 == 0
  it moves by ``-lr_alpha * g``. **Quirk reproduced** (``alpha_grad="accumulate"``): g is alpha's
  ``.grad``, never zeroed, i.e. the SUM of dL/dalpha over all epochs so far. ``"fresh"``: the
  current epoch's gradient; ``"window"``: the sum over the 10 epochs since the last update.
* Selection: after every epoch the val accuracy; the state of the last epoch whose val accuracy
  ties or beats the best so far (>=, from 0, so epoch 0 is always taken) is the one reported.

Several seeds of a setting (``fit_runs``, biomedjax/train/fit_pack.py): the 300-epoch scans of
all runs are one vmapped program; each run's init and step sizes stay on the host (numpy's
symmetric eigensolver and the fp64 alpha0, the reference's numerics), a few ms per run.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from biomedjax.methods import base, harness, options

ALPHA_GRADS = ("accumulate", "fresh", "window")


@dataclasses.dataclass(frozen=True)
class Options:
  """The reference's LP2/few_shot.yaml (``lr``/``num_step`` there are unused by the trainer)."""
  epochs: int = 300               # train_epoch
  alpha_every: int = 10           # alpha moves after epochs with (epoch + 1) % 10 == 0
  alpha_grad: str = "accumulate"  # "accumulate" (reference) | "fresh" | "window"
  alpha_factor: float = 250.0     # alpha0 = 250 * mean same-class image-text cosine
  momentum: float = 0.9
  fp16_init: bool = True          # the reference's fp16 class sums for W


def init_weights(F, labels, num_classes: int, fp16: bool = True) -> jax.Array:
  """(N, d) per-class sums of F, fp16-rounded as the reference's fp16 bmm makes them."""
  F = jnp.asarray(F, jnp.float32)
  onehot = jax.nn.one_hot(jnp.asarray(labels), num_classes, dtype=jnp.float32)
  if fp16:
    F = F.astype(jnp.float16).astype(jnp.float32)
  W = onehot.T @ F
  return W.astype(jnp.float16).astype(jnp.float32) if fp16 else W


def init_alpha(F, labels, text, num_classes: int, factor: float = 250.0) -> np.float32:
  """``factor * mean_c (mean_{i: y_i = c} f_i . t_c)``: fp32 class means, fp64 mean, fp32 out."""
  cos = np.asarray(jnp.asarray(F, jnp.float32) @ jnp.asarray(text, jnp.float32).T)
  labels = np.asarray(labels)
  means = np.array([cos[labels == c, c].mean(dtype=np.float32) for c in range(num_classes)],
                   np.float32)
  return np.float32(factor * means.astype(np.float64).mean())


def step_sizes(F, text) -> tuple[float, float]:
  """(lr_W, lr_alpha) = (4n / lambda_max(F^T F), n / (4 max_c sum_i (f_i . t_c)^2)).

  F^T F (d x d) and F F^T (n x n) share their non-zero eigenvalues; the smaller one is
  decomposed (64 x 64 instead of 512 x 512 at 16 shots: ~100x less work, same value)."""
  F = np.asarray(F, np.float32)
  n = F.shape[0]
  gram = F @ F.T if n < F.shape[1] else F.T @ F
  lam = float(np.linalg.eigvalsh(gram).max())
  ft = F @ np.asarray(text, np.float32).T
  return 4.0 * n / lam, float(n / (np.sum(ft ** 2, axis=0, dtype=np.float32).max() * 4))


def lp_logits(params, F, text):
  return F @ params["W"].T + params["b"] + params["alpha"] * (F @ text.T)


def _loss(wb, alpha, F, labels, text):
  logits = lp_logits({**wb, "alpha": alpha}, F, text)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train(params, F, labels, text, val_F, val_labels, lr_w, lr_alpha, opts: Options):
  """The 300 epochs; -> (selected params, its epoch, per-epoch alpha (epochs, N), val counts)."""
  if opts.alpha_grad not in ALPHA_GRADS:
    raise ValueError(f"config.method.alpha_grad={opts.alpha_grad!r}; expected one of "
                     f"{ALPHA_GRADS}")
  grad_fn = jax.grad(_loss, argnums=(0, 1))

  def epoch(carry, e):
    wb, alpha, buf, gsum, best = carry
    g_wb, g_alpha = grad_fn(wb, alpha, F, labels, text)
    buf = jax.tree.map(lambda b, g: jnp.where(e == 0, g, opts.momentum * b + g), buf, g_wb)
    wb = jax.tree.map(lambda p, b: p - lr_w * b, wb, buf)
    gsum = gsum + g_alpha
    g = {"accumulate": gsum, "window": gsum, "fresh": g_alpha}[opts.alpha_grad]
    update = (e + 1) % opts.alpha_every == 0
    alpha = jnp.where(update, alpha - lr_alpha * g, alpha)
    if opts.alpha_grad == "window":
      gsum = jnp.where(update, jnp.zeros_like(gsum), gsum)
    params = {**wb, "alpha": alpha}
    correct = (lp_logits(params, val_F, text).argmax(-1) == val_labels).sum()
    take = correct >= best[0]
    best = (jnp.where(take, correct, best[0]), jnp.where(take, e, best[1]),
            jax.tree.map(lambda new, old: jnp.where(take, new, old), params, best[2]))
    return (wb, alpha, buf, gsum, best), (alpha, correct)

  wb = {"W": params["W"], "b": params["b"]}
  alpha = params["alpha"]
  carry = (wb, alpha, jax.tree.map(jnp.zeros_like, wb), jnp.zeros_like(alpha),
           (jnp.int32(0), jnp.int32(-1), params))
  (_, _, _, _, best), (alphas, counts) = jax.lax.scan(epoch, carry, jnp.arange(opts.epochs))
  return best[2], best[1], alphas, counts


_train_jit = jax.jit(train, static_argnums=(8,))


def _prepare(rng, train_feats, train_labels, val_feats, val_labels, text, num_classes: int,
             opts: Options):
  """Normalised features, the initial params and the step sizes of one run (host: numpy's
  symmetric eigensolver, the fp64 alpha0)."""
  if val_feats is None or len(val_labels) == 0:
    raise ValueError("lp_plus_plus: the val set is empty; LP++ selects its epoch on val")
  F = jnp.asarray(train_feats, jnp.float32)
  F = F / jnp.linalg.norm(F, axis=-1, keepdims=True)
  val_F = jnp.asarray(val_feats, jnp.float32)
  val_F = val_F / jnp.linalg.norm(val_F, axis=-1, keepdims=True)
  text = jnp.asarray(text, jnp.float32)
  labels = jnp.asarray(train_labels, jnp.int32)
  d = F.shape[1]
  bound = 1.0 / np.sqrt(d)
  params = {"W": init_weights(F, labels, num_classes, opts.fp16_init),
            "b": jax.random.uniform(rng, (num_classes,), jnp.float32, -bound, bound),
            "alpha": jnp.full((num_classes,), init_alpha(F, labels, text, num_classes,
                                                         opts.alpha_factor))}
  lr_w, lr_alpha = step_sizes(F, text)
  return dict(params=params, F=F, labels=labels, text=text, val_F=val_F,
              val_labels=jnp.asarray(val_labels, jnp.int32), lr_w=lr_w, lr_alpha=lr_alpha)


def _log(p, best, epoch, alphas, counts) -> dict:
  return {"params": jax.tree.map(np.asarray, best), "epoch": int(epoch), "lr_w": p["lr_w"],
          "lr_alpha": p["lr_alpha"], "alpha0": float(p["params"]["alpha"][0]),
          "alphas": np.asarray(alphas), "val_correct": np.asarray(counts)}


def fit_lp_plus_plus(rng, train_feats, train_labels, val_feats, val_labels, text,
                     num_classes: int, opts: Options = Options()) -> dict:
  """Init + 300 epochs on unnormalised features -> selected {"W", "b", "alpha"} and a log."""
  p = _prepare(rng, train_feats, train_labels, val_feats, val_labels, text, num_classes, opts)
  out = _train_jit(p["params"], p["F"], p["labels"], p["text"], p["val_F"], p["val_labels"],
                   jnp.float32(p["lr_w"]), jnp.float32(p["lr_alpha"]), opts)
  return _log(p, *out)


@functools.partial(jax.jit, static_argnums=(8,))
def _train_runs(params, F, labels, text, val_F, val_labels, lr_w, lr_alpha, opts):
  """``train`` vmapped over runs: params, F, labels and the step sizes carry a run axis."""
  return jax.vmap(lambda p, f, y, lw, la: train(p, f, y, text, val_F, val_labels, lw, la, opts))(
      params, F, labels, lr_w, lr_alpha)


def fit_lp_plus_plus_runs(rngs, train_feats: list, train_labels: list, val_feats, val_labels,
                          text, num_classes: int, opts: Options = Options()) -> list[dict]:
  """``fit_lp_plus_plus`` of several runs: each run's init and step sizes on the host, the
  300 epochs of all runs as one vmapped scan."""
  ps = [_prepare(r, f, y, val_feats, val_labels, text, num_classes, opts)
        for r, f, y in zip(rngs, train_feats, train_labels)]
  stack = lambda key: jax.tree.map(lambda *xs: jnp.stack(xs), *[p[key] for p in ps])
  out = _train_runs(stack("params"), stack("F"), stack("labels"), ps[0]["text"], ps[0]["val_F"],
                    ps[0]["val_labels"], jnp.asarray([p["lr_w"] for p in ps], jnp.float32),
                    jnp.asarray([p["lr_alpha"] for p in ps], jnp.float32), opts)
  return [_log(p, *jax.tree.map(lambda x: x[r], out)) for r, p in enumerate(ps)]


def read_options(cfg) -> Options:
  return options.read(Options, cfg, "lp_plus_plus")


class LPPlusPlus(base.Method):
  """LP++'s 300 full-batch epochs run in ``fit`` on one cached augmented pass (``fit_views``)."""
  name = "lp_plus_plus"
  read_options = staticmethod(read_options)
  harness_protocol = True  # BiomedCoOp's adapter harness (its reported std convention)
  inputs = "features"
  stages = ("fit",)
  fit_views = 1
  packs_runs = True

  def prepare(self, backbone_params) -> dict:
    return {"text_features": harness.text_features(self, backbone_params)}

  def fit(self, frozen, train, val, rng=None) -> dict:
    n_cls = self.task.num_classes
    harness.check_fit_inputs(train, val, n_cls, self.name)
    rng = jax.random.key(0) if rng is None else rng
    r = fit_lp_plus_plus(rng, harness.train_views(train)[0], train.labels, val.features,
                         val.labels, frozen["text_features"], n_cls, self.opts)
    return jax.tree.map(jnp.asarray, r["params"])

  def fit_runs(self, frozen, trains, val, rngs) -> list:
    """The runs' 300-epoch scans as one vmapped computation (each run's own view and init)."""
    n_cls = self.task.num_classes
    for t in trains:
      harness.check_fit_inputs(t, val, n_cls, self.name)
    rs = fit_lp_plus_plus_runs(rngs, [harness.train_views(t)[0] for t in trains],
                               [t.labels for t in trains], val.features, val.labels,
                               frozen["text_features"], n_cls, self.opts)
    return [jax.tree.map(jnp.asarray, r["params"]) for r in rs]

  def logits(self, trainable, frozen, features):
    F = features / jnp.linalg.norm(features, axis=-1, keepdims=True)
    return lp_logits(trainable, F, frozen["text_features"])


def build(backbone, task, cfg=None, objective=None) -> LPPlusPlus:
  return LPPlusPlus(backbone, task, read_options(cfg), objective)
