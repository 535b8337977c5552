"""Tip-Adapter (training-free) as BiomedCoOp's few-shot harness runs it.

Reference: HealthX-Lab/BiomedCoOp ``trainers/TipAdapter/tip_adapter_biomedclip.py`` (branch
``finetune == False``) with ``build_cache_model`` and ``search_hp_tip_biomedclip`` of
``trainers/utils.py``; config ``configs/trainers/TiP_Adapter/few_shot.yaml``.

* **Cache.** Keys: the n training images through the *augmented* train transform,
  ``augment_epochs`` (= 1) random views each and no clean view; raw features are averaged over the
  views, then L2-normalised: ``keys`` (n, d), rows in loader order. Values: ``one_hot(labels)``
  (n, N) (fp16 in the reference, exact for 0/1).
* **Logits.** ``z = s f T^T + alpha * exp(-(beta - beta * f K^T)) V`` with ``f`` the normalised
  image feature and ``s = 85.2323`` hard-coded (the reference's BiomedCLIP constant; the CLIP
  variant uses 100), not read from the model.
* **Search.** beta and alpha both range over ``g_i = 0.1 + i (50 - 0.1) / 200``, i = 0..199
  (0.1 .. 49.7505). The reference loops beta outer, alpha inner, both ascending, and keeps a pair
  only on *strictly* greater val accuracy, starting from 0: the first maximum in that order wins,
  and when every pair scores 0 % the result is (0, 0). Here all 40,000 pairs are scored in one
  jitted evaluation (val correct counts, a (200, 200) array) and the first row-major maximum is
  taken, which is the same rule.

The search never touches the test set; it runs on the few-shot val features (eval transform).

Several seeds of a setting (``fit_runs``): every run's cache (own augmented view) and its
40,000-pair grid in one vmapped evaluation; only the first-best pick (an argmax) is per run on the
host. With ``cache`` (a saved cache file) the runs go one by one.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from biomedjax.methods import base, harness, options

log = logging.getLogger("biomedjax")

SCALE = 85.2323  # the reference's hard-coded logit scale for BiomedCLIP (trainers/utils.py)


@dataclasses.dataclass(frozen=True)
class Options:
  """The reference's TiP_Adapter/few_shot.yaml (training-free branch)."""
  augment_epochs: int = 1                     # augmented views averaged into the cache keys
  search_scale: tuple[float, float] = (50.0, 50.0)  # (beta, alpha) grid upper ends (exclusive)
  search_step: tuple[int, int] = (200, 200)   # grid sizes
  init_beta: float = 1.0                      # only logged (pre-search val accuracy)
  init_alpha: float = 1.0
  scale: float = SCALE                        # the hard-coded logit scale
  cache: str = ""                             # path stem of a saved cache ("": build, no file)


def grid(scale: float, steps: int) -> np.ndarray:
  """``[i * (scale - 0.1) / steps + 0.1 for i in range(steps)]`` as the reference builds it
  (Python floats, i.e. float64)."""
  return np.array([i * (scale - 0.1) / steps + 0.1 for i in range(steps)], np.float64)


def normalize(x):
  """Rows divided by their L2 norm, as the reference's ``x /= x.norm(dim=-1, keepdim=True)``."""
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def views_of(features) -> jax.Array:
  """(n, d) -> (1, n, d); (E, n, d) unchanged. Augmented training features come as E views."""
  features = jnp.asarray(features, jnp.float32)
  if features.ndim == 2:
    return features[None]
  if features.ndim != 3:
    raise ValueError(f"training features must be (n, d) or (views, n, d), got {features.shape}")
  return features


def build_cache(views, labels, num_classes: int) -> tuple[jax.Array, jax.Array]:
  """(keys (n, d), values (n, N)): the mean of the raw views, normalised, and the one-hot labels."""
  views = views_of(views)
  keys = normalize(views.mean(axis=0))
  return keys, jax.nn.one_hot(jnp.asarray(labels), num_classes, dtype=jnp.float32)


def cache_logits(affinity, values, beta, alpha):
  """``alpha * exp(-(beta - beta * affinity)) @ values``, in the reference's operation order."""
  return (jnp.exp(-(beta - beta * affinity)) @ values) * alpha


def tip_logits(feats_n, text, keys, values, beta, alpha, scale: float = SCALE):
  """(B, N) Tip-Adapter logits of normalised features; ``text`` (N, d) normalised."""
  clip = scale * feats_n @ text.T
  return clip + cache_logits(feats_n @ keys.T, values, beta, alpha)


@jax.jit
def grid_counts(clip, affinity, values, labels, betas, alphas):
  """Val correct counts (len(betas), len(alphas)) of every (beta, alpha) pair, in one program.

  ``clip`` (m, N) = s f T^T and ``affinity`` (m, n) of the val features; argmax ties go to the
  first class (the reference's ``topk`` agrees whenever logits are distinct).
  """
  m, n_cls = clip.shape
  betas, alphas = betas.astype(jnp.float32), alphas.astype(jnp.float32)

  def per_beta(beta):
    cache = jnp.exp(-(beta - beta * affinity)) @ values                      # (m, N)
    logits = clip[None] + cache[None] * alphas[:, None, None]                # (A, m, N)
    return (logits.argmax(-1) == labels[None]).sum(-1)                       # (A,)

  # Bound the live logits to ~16M floats whatever the val size; one compiled program either way.
  batch = max(1, min(len(betas), (1 << 24) // max(1, len(alphas) * m * n_cls)))
  return jax.lax.map(per_beta, betas, batch_size=batch)


@jax.jit
def search_runs(clip, affinity, values, labels, betas, alphas):
  """``grid_counts`` of several runs at once: ``affinity`` (R, m, n), ``values`` (R, n, N) ->
  (R, len(betas), len(alphas)); the val features (``clip``, ``labels``) are shared."""
  return jax.vmap(grid_counts, in_axes=(None, 0, 0, None, None, None))(
      clip, affinity, values, labels, betas, alphas)


@dataclasses.dataclass
class SearchResult:
  beta: float
  alpha: float
  best_correct: int
  counts: np.ndarray     # (len(betas), len(alphas)) val correct counts


def first_best(counts: np.ndarray, betas: np.ndarray, alphas: np.ndarray) -> SearchResult:
  """The reference's rule: beta outer, alpha inner, strictly greater than the best so far
  (starting at 0) -> the first row-major maximum; (0, 0) when every pair has 0 correct."""
  counts = np.asarray(counts)
  flat = int(np.argmax(counts))  # numpy: the first occurrence of the maximum
  best = int(counts.flat[flat])
  if best == 0:
    return SearchResult(0.0, 0.0, 0, counts)
  i, j = np.unravel_index(flat, counts.shape)
  return SearchResult(float(betas[i]), float(alphas[j]), best, counts)


def check_val(val_feats, val_labels, what: str):
  if val_feats is None or len(val_labels) == 0:
    raise ValueError(f"{what}: the val set is empty; the (beta, alpha) search scores pairs on "
                     f"the few-shot val features (min(K, 4) per class), so it needs at least one")


def search(val_feats_n, val_labels, text, affinity, values, opts: Options) -> SearchResult:
  """The (beta, alpha) grid search on val; ``affinity`` = val features vs the (adapted) keys."""
  check_val(val_feats_n, val_labels, "tip_adapter search")
  betas = grid(opts.search_scale[0], opts.search_step[0])
  alphas = grid(opts.search_scale[1], opts.search_step[1])
  clip = opts.scale * jnp.asarray(val_feats_n) @ jnp.asarray(text).T
  counts = grid_counts(clip, jnp.asarray(affinity), jnp.asarray(values),
                       jnp.asarray(val_labels, jnp.int32), jnp.asarray(betas), jnp.asarray(alphas))
  return first_best(np.asarray(counts), betas, alphas)


def fit_tip_adapter(train_views, train_labels, val_feats, val_labels, text, num_classes: int,
                    opts: Options = Options()) -> dict:
  """Cache + search: ``{"keys", "values", "beta", "alpha"}`` (numpy) and the search's val count."""
  keys, values = build_cache(train_views, train_labels, num_classes)
  check_val(val_feats, val_labels, "tip_adapter")
  val_n = normalize(jnp.asarray(val_feats, jnp.float32))
  result = search(val_n, val_labels, text, val_n @ keys.T, values, opts)
  return {"keys": np.asarray(keys), "values": np.asarray(values),
          "beta": np.float32(result.beta), "alpha": np.float32(result.alpha),
          "val_correct": result.best_correct}


def read_options(cfg) -> Options:
  opts = options.read(Options, cfg, "tip_adapter")
  if opts.augment_epochs < 1:
    raise ValueError(f"config.method.augment_epochs={opts.augment_epochs}: at least 1 view")
  return dataclasses.replace(opts, search_scale=tuple(opts.search_scale),
                             search_step=tuple(int(s) for s in opts.search_step))


class TipAdapter(base.Method):
  """Training-free: ``fit`` builds the cache from ``augment_epochs`` augmented views and searches
  (beta, alpha) on val; with ``cache`` set, a saved cache for the same classes and backbone is
  reused (another class list or backbone is an error) and a new one is saved there."""
  name = "tip_adapter"
  read_options = staticmethod(read_options)
  harness_protocol = True  # BiomedCoOp's adapter harness (its reported std convention)
  inputs = "features"
  stages = ("fit",)
  packs_runs = True

  @property
  def fit_views(self) -> int:
    return self.opts.augment_epochs

  def prepare(self, backbone_params) -> dict:
    return {"text_features": harness.text_features(self, backbone_params)}

  def fit(self, frozen, train, val, rng=None) -> dict:
    n_cls = self.task.num_classes
    harness.check_fit_inputs(train, val, n_cls, self.name)
    views = harness.train_views(train)[:self.opts.augment_epochs]
    text = jnp.asarray(frozen["text_features"])
    cache = None
    if self.opts.cache:
      fingerprint = harness.backbone_fingerprint(frozen["backbone"])
      if pathlib.Path(self.opts.cache).with_suffix(".npz").exists():
        cache = harness.load_state(self.opts.cache, self.task.classnames, fingerprint, self.name)
      else:
        keys, values = build_cache(views, train.labels, n_cls)
        cache = {"keys": np.asarray(keys), "values": np.asarray(values)}
        harness.save_state(self.opts.cache, cache, self.task.classnames, fingerprint, self.name)
    if cache is None:
      keys, values = build_cache(views, train.labels, n_cls)
    else:
      keys, values = jnp.asarray(cache["keys"]), jnp.asarray(cache["values"])
    val_n = normalize(jnp.asarray(val.features, jnp.float32))
    result = search(val_n, val.labels, text, val_n @ keys.T, values, self.opts)
    return {"keys": jnp.asarray(keys), "values": jnp.asarray(values),
            "beta": jnp.float32(result.beta), "alpha": jnp.float32(result.alpha)}

  def fit_runs(self, frozen, trains, val, rngs) -> list:
    """Caches of every run and their (beta, alpha) searches as one vmapped computation (R x
    40,000 pairs); the first-best rule is applied per run on the host. With ``cache`` set the
    runs go one by one: the saved cache is one file, written by the first run, read by the rest."""
    if self.opts.cache:
      return super().fit_runs(frozen, trains, val, rngs)
    n_cls = self.task.num_classes
    for t in trains:
      harness.check_fit_inputs(t, val, n_cls, self.name)
    views = jnp.stack([harness.train_views(t)[:self.opts.augment_epochs] for t in trains])
    labels = jnp.stack([jnp.asarray(t.labels) for t in trains])
    keys, values = jax.vmap(lambda v, y: build_cache(v, y, n_cls))(views, labels)
    val_n = normalize(jnp.asarray(val.features, jnp.float32))
    betas = grid(self.opts.search_scale[0], self.opts.search_step[0])
    alphas = grid(self.opts.search_scale[1], self.opts.search_step[1])
    text = jnp.asarray(frozen["text_features"])
    counts = search_runs(self.opts.scale * val_n @ text.T,
                         jnp.einsum("md,rnd->rmn", val_n, keys), values,
                         jnp.asarray(val.labels, jnp.int32), jnp.asarray(betas),
                         jnp.asarray(alphas))
    out = []
    for r in range(len(trains)):
      result = first_best(np.asarray(counts[r]), betas, alphas)
      out.append({"keys": keys[r], "values": values[r], "beta": jnp.float32(result.beta),
                  "alpha": jnp.float32(result.alpha)})
    return out

  def logits(self, trainable, frozen, features):
    return tip_logits(normalize(features), frozen["text_features"], trainable["keys"],
                      trainable["values"], trainable["beta"], trainable["alpha"], self.opts.scale)


def build(backbone, task, cfg=None, objective=None) -> TipAdapter:
  return TipAdapter(backbone, task, read_options(cfg), objective)
