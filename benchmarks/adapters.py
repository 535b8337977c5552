"""Adapter baselines, one 16-shot BTMRI-sized run each: biomedjax vs the PyTorch reference loop.

BTMRI-sized: 4 classes x 16 shots (n = 64), val 4 per class, d = 512. Two parts per method:

* **Feature extraction** (same work on both sides, the frozen image tower): full-size BiomedCLIP
  with random weights, fp32, 224 x 224, images/s of the jitted Flax tower (``--encode``; the torch
  tower is in benchmarks/encode.py). A method needs ``fit_views`` x n augmented encodings + val +
  test; the README multiplies out.
* **Training / search on cached features**: ``biomedjax`` (the functions the methods' ``fit``
  runs: jitted, the alpha0 fine-tunes in one program, one for the 40,000-pair search) vs the torch
  transcriptions of the reference (tests/parity/reference_adapters.py: the literal double loop,
  one AdamW per alpha0 on the shared keys, the 300-epoch LP++ loop, CLIP-Adapter's
  per-iteration SGD), on the same random features. JAX is timed cold (with compilation) and warm
  (a second, identical call).

  PYTHONPATH=. python benchmarks/adapters.py [--encode] [--rows tip,tip_f,lp,clip]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from biomedjax.methods import clip_adapter as ca  # noqa: E402
from biomedjax.methods import lp_plus_plus as lp  # noqa: E402
from biomedjax.methods import tip_adapter as tip  # noqa: E402
from biomedjax.methods import tip_adapter_f as tip_f  # noqa: E402
from tests import adapter_features  # noqa: E402
from tests.parity import reference_adapters as ref  # noqa: E402


def timed(fn):
  t = time.perf_counter()
  out = fn()
  jax.block_until_ready(out) if not isinstance(out, (tuple, list)) or out else None
  return time.perf_counter() - t, out


def cold_warm(fn):
  cold, _ = timed(fn)
  warm, _ = timed(fn)
  return cold, warm


def row_tip(d):
  def ours():
    r = tip.fit_tip_adapter(d.views[:1], d.train_labels, d.val, d.val_labels, d.text, 4)
    return r["beta"]

  def theirs():
    keys, values = ref.build_cache_model(d.views[:1], d.train_labels)
    return ref.search_hp_tip(keys, values, ref.t(adapter_features.normalize(d.val)),
                             ref.t(d.val_labels, torch.long), ref.t(d.text).t())
  return "Tip-Adapter: cache + 200x200 search", ours, theirs


def row_tip_f(d):
  views_n = adapter_features.normalize(d.views)

  def ours():
    return tip_f.fit_tip_adapter_f(d.views, d.train_labels, d.val, d.val_labels, d.text, 4).W

  def theirs():
    keys, values = ref.build_cache_model(d.views[:1], d.train_labels)
    return ref.tip_adapter_f(keys, values, lambda a, e: ref.t(views_n[1 + (a * 20 + e) % 200]),
                             ref.t(d.train_labels, torch.long),
                             ref.t(adapter_features.normalize(d.val)),
                             ref.t(d.val_labels, torch.long), ref.t(d.text).t())
  return "Tip-Adapter-F: 10 alpha0 fine-tunes x 20 epochs + search", ours, theirs


def row_lp(d):
  def ours():
    return lp.fit_lp_plus_plus(jax.random.key(0), d.train, d.train_labels, d.val, d.val_labels,
                               d.text, 4)["params"]["W"]

  def theirs():
    return ref.lp_plus_plus(ref.t(adapter_features.normalize(d.train)),
                            ref.t(d.train_labels, torch.long),
                            ref.t(adapter_features.normalize(d.val)),
                            ref.t(d.val_labels, torch.long), ref.t(d.text).t(), 16,
                            np.zeros(4, np.float32))
  return "LP++: 300 full-batch epochs", ours, theirs


def row_clip(d):
  rng = np.random.default_rng(0)
  orders = np.stack([rng.permutation(64) for _ in range(20)])
  views = d.views[1:21]
  params = ca.init_adapter(jax.random.key(0), 512)
  train = jax.jit(lambda p, v, o, y, t: ca.train_on_views(p, v, o, y, t, 85.2, ca.Options()))
  views_n = adapter_features.normalize(views)

  def ours():
    return train(params, views, orders, d.train_labels, d.text)[0]["w1"]

  def theirs():
    adapter = ref.Adapter(512)
    optimizer, scheduler = ref.clip_adapter_sgd(params=adapter.parameters())
    for e in range(20):
      for i in range(0, 64, 32):
        idx = orders[e][i:i + 32]
        logits = ref.clip_adapter_logits(adapter, ref.t(views_n[e][idx]), ref.t(d.text), 85.2)
        loss = F.cross_entropy(logits, ref.t(d.train_labels[idx], torch.long))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    return adapter
  return "CLIP-Adapter: 20 epochs x 2 SGD steps", ours, theirs


ROWS = {"tip": row_tip, "tip_f": row_tip_f, "lp": row_lp, "clip": row_clip}


def encode_rate(batch=16, batches=2) -> float:
  from biomedjax.models import biomedclip as bc
  from biomedjax.models import config as model_config
  from biomedjax.models.clip import CLIP
  cfg = model_config.biomedclip()
  params = bc.init_params(cfg, 0)
  fn = jax.jit(lambda p, x: CLIP(cfg).apply({"params": p}, x, method=CLIP.encode_image))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, 224, 224, 3)), jnp.float32)
  jax.block_until_ready(fn(params, x))
  t = time.perf_counter()
  for _ in range(batches):
    jax.block_until_ready(fn(params, x))
  return batch * batches / (time.perf_counter() - t)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--rows", default=",".join(ROWS))
  parser.add_argument("--encode", action="store_true")
  args = parser.parse_args()
  d = adapter_features.make(seed=0, views=201, noise=2.0, text_noise=2.0)
  print("| row | biomedjax cold (s) | biomedjax warm (s) | PyTorch reference (s) | warm speed-up |")
  print("|---|---|---|---|---|")
  for key in args.rows.split(","):
    name, ours, theirs = ROWS[key](d)
    cold, warm = cold_warm(ours)
    t, _ = timed(theirs)
    print(f"| {name} | {cold:.2f} | {warm:.3f} | {t:.2f} | {t / warm:.0f}x |", flush=True)
  if args.encode:
    print(f"\nfull-size image tower (Flax, jitted, batch 16): {encode_rate():.2f} images/s")


if __name__ == "__main__":
  main()
