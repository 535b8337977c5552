"""Visual-reprogramming train step: biomedjax (jitted JAX) vs the PyTorch reference, and memory.

Full-size OpenAI CLIP ViT-B/16 (open_clip ``ViT-B-16-quickgelu`` layout, random weights,
converted in memory by the real mapping), fp32 on both sides, BTMRI-sized problem: 4 classes,
images at S = 192 in the 224 canvas (16-pixel frame), synthetic attribute sentences (5 per class,
m = 20 draws with replacement, k = 3). The text heads are encoded once, untimed, on both sides
(the reference encodes them once before training).

Rows (warm, median of ``--steps`` steps):
* BioMedVR step: JAX = ``value_and_grad`` of ``BioMedVR.loss`` + optax SGD (lr 40, momentum
  0.9) in one ``jax.jit``, both programs through the tower as ONE batched forward of 2B images;
  PyTorch = the reference network of the parity tests (``tests/parity/reference_vr.py``: two
  ``encode_image`` passes), ``loss.backward()``, ``torch.optim.SGD.step()``.
* AR step (one padding program, label head), same protocol.
* BioMedVR, JAX only: the batched 2B pass vs two B passes (the reference's structure).

Memory (``--memory``): XLA's compiled memory analysis of the jitted BioMedVR step (no run, so
large batches cost only a compilation): arguments + outputs + temporaries - aliased, per batch
size, with and without ``model.remat`` (jax.checkpoint of the tower's blocks).

  python benchmarks/vr_step.py [--batch 4] [--steps 3] [--memory 16,32,64] [--rows biomedvr,ar,batched]
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.timing import median_seconds  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402

from biomedjax.methods import METHODS  # noqa: E402
from biomedjax.methods.base import Backbone, Task  # noqa: E402
from tests.parity import test_vr_parity as fx  # noqa: E402
from tests.parity.reference_vr import TorchVR  # noqa: E402

LR, MOMENTUM = 40.0, 0.9
SIZE = 192



def build(side, kind, attr_dir, remat=False, shapes_only=False):
  """-> (method, frozen, trainable); ``shapes_only``: frozen as shapes (no text encoding)."""
  _, _, backbone, params = side
  backbone = Backbone(backbone.module.clone(remat=remat), backbone.tokenizer)
  method = METHODS[kind].build(backbone, Task(fx.CLASSES), fx.method_options(
      kind, attr_dir, 224, SIZE, 16, **({"m": 20} if kind in ("attrvr", "biomedvr") else {})))
  if shapes_only:
    frozen = {"backbone": params, **jax.eval_shape(method.prepare, params)}
  else:
    frozen = {"backbone": params, **method.prepare(params)}
  trainable = fx.perturbed(method.init(jax.random.key(0), frozen), 0)
  return method, frozen, trainable


def jax_step_fn(method):
  tx = optax.sgd(LR, momentum=MOMENTUM)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(trainable, opt_state, frozen, batch):
    (loss, _), grads = jax.value_and_grad(method.loss, has_aux=True)(
        trainable, jax.lax.stop_gradient(frozen), batch, jax.random.key(0))
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state, loss
  return tx, step


def jax_runner(method, frozen, trainable, batch):
  tx, step = jax_step_fn(method)
  state = {"t": jax.tree.map(jnp.asarray, trainable)}
  state["o"] = tx.init(state["t"])
  batch = jax.device_put(batch)

  def run():
    state["t"], state["o"], loss = step(state["t"], state["o"], frozen, batch)
    loss.block_until_ready()
  return run


def torch_runner(side, kind, method, trainable, batch):
  torch_model, encode_text = side[:2]
  names = [n for n in trainable if n != "gate"]
  ref = TorchVR(torch_model, encode_text, kind, [trainable[n] for n in names], method.sentences,
                224, SIZE, gate=trainable.get("gate"))
  opt = torch.optim.SGD([p for p in ref.parameters() if p.requires_grad], lr=LR,
                        momentum=MOMENTUM)
  x = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous()
  y = torch.from_numpy(batch["label"]).long()

  def run():
    loss, _ = ref.loss(x, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
  return run


def two_pass(method):
  """The same method, but each program through the tower in its own pass (the reference's
  structure), to measure what the batched 2B pass saves."""
  def image_features(trainable, frozen, images01):
    x = method.program_images(trainable, images01)
    return jnp.stack([method.backbone.encode_pixels(frozen["backbone"], x[i])
                      for i in range(x.shape[0])])
  method.image_features = image_features
  return method


def memory_bytes(method, frozen, trainable, batch_size):
  """arguments + outputs + temporaries - aliased of the compiled BioMedVR step (no run)."""
  tx, step = jax_step_fn(method)
  spec = lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype)
  trainable_s = jax.tree.map(spec, trainable)
  opt_s = jax.eval_shape(tx.init, trainable_s)
  batch_s = {"image": jax.ShapeDtypeStruct((batch_size, SIZE, SIZE, 3), jnp.float32),
             "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
  compiled = step.lower(trainable_s, opt_s, jax.tree.map(spec, frozen), batch_s).compile()
  m = compiled.memory_analysis()
  total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
           - m.alias_size_in_bytes)
  return total, m.temp_size_in_bytes


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--steps", type=int, default=3)
  ap.add_argument("--rows", default="biomedvr,ar,batched")
  ap.add_argument("--memory", default="", help="comma-separated batch sizes, e.g. 16,32,64")
  args = ap.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")
  torch.set_grad_enabled(True)
  tmp = pathlib.Path(tempfile.mkdtemp())
  attr_dir = fx.write_attributes(tmp / "attributes", fx.CLASSES)
  side = fx.clip_side(tmp / "clip", "clip_vit_b16", canvas=224, seed=4)
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(size=(args.batch, SIZE, SIZE, 3)).astype(np.float32),
           "label": (np.arange(args.batch) % len(fx.CLASSES)).astype(np.int32)}
  rows = []
  wanted = args.rows.split(",") if args.rows else []
  for kind in ("biomedvr", "ar"):
    if kind not in wanted:
      continue
    method, frozen, trainable = build(side, kind, attr_dir)
    j = median_seconds(jax_runner(method, frozen, trainable, batch), args.steps)
    t = median_seconds(torch_runner(side, kind, method, trainable, batch), args.steps)
    rows.append((f"{kind} train step (batch {args.batch})", j, t))
  if "batched" in wanted:  # interleaved, so load changes on a shared box hit both alike
    method, frozen, trainable = build(side, "biomedvr", attr_dir)
    one = jax_runner(method, frozen, trainable, batch)
    method2, _, _ = build(side, "biomedvr", attr_dir, shapes_only=True)
    two = jax_runner(two_pass(method2), frozen, trainable, batch)
    one(), two()
    times = {one: [], two: []}
    for _ in range(args.steps):
      for fn in (one, two):
        t = time.perf_counter()
        fn()
        times[fn].append(time.perf_counter() - t)
    batched, separate = statistics.median(times[one]), statistics.median(times[two])
    rows.append((f"biomedvr JAX: one 2B pass (left) vs two B passes (right), batch "
                 f"{args.batch}", batched, separate))
  print("| row | JAX | PyTorch (or right) | speed-up |\n|---|---|---|---|")
  for name, j, t in rows:
    print(f"| {name} | {j:.2f} s | {t:.2f} s | {t / j:.2f}x |")
  if args.memory:
    print("\n| BioMedVR step, batch | no remat: total (temp) | remat: total (temp) |\n|---|---|---|")
    for b in map(int, args.memory.split(",")):
      cells = []
      for remat in (False, True):
        method, frozen, trainable = build(side, "biomedvr", attr_dir, remat, shapes_only=True)
        total, temp = memory_bytes(method, frozen, trainable, b)
        cells.append(f"{total / 2**30:.2f} GiB ({temp / 2**30:.2f})")
      print(f"| {b} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
  main()
