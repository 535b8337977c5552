"""Prompt-learning train-step time: biomedjax (jitted JAX) vs the PyTorch reference, one run.

Full-size BiomedCLIP (random weights, converted in memory by the real mapping), fp32 on both
sides, a BTMRI-sized problem: batch 32 of 224x224 pixels, 4 classes. One step = frozen image
tower forward, all class prompts through the text tower, CE loss, gradient w.r.t. the context,
SGD momentum 0.9 + weight decay 5e-4 update.

* JAX: the engine's frozen image tower (``step.method_batch``), ``method.value_and_grad`` w.r.t.
  the trainable pytree and the optax update in one ``jax.jit``; the backbone is an argument
  (never closed over); prompts at the bucketed length (16 tokens for these class names).
* PyTorch: the reference CoOp forward (``tests/parity/reference_coop.py``, prompts padded to
  256 tokens as the reference does), ``loss.backward()``, ``torch.optim.SGD.step()``.

Both warm (compiled / first step done) before timing; the median of ``--steps`` steps is
reported. ``--breakdown`` adds the two halves of a step: image-tower forward (same work on both
sides) and text tower forward + backward. Each method is one row of ``ROWS``. BiomedCoOp (batch 4)
and CoCoOp (batch 1) run at their reference batch sizes, the first rows of the batch.

  python benchmarks/train_step.py [--batch 32] [--steps 3] [--breakdown] [--rows biomedcoop,cocoop]
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.timing import median_seconds  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from biomedjax.methods import biomedcoop, cocoop, coop  # noqa: E402
from biomedjax.methods.base import Task  # noqa: E402
from biomedjax.train import step as step_lib  # noqa: E402
from tests.parity import method_fixture  # noqa: E402
from tests.parity.reference_biomedcoop import TorchBiomedCoOp  # noqa: E402
from tests.parity.reference_cocoop import TorchCoCoOp  # noqa: E402
from tests.parity.reference_coop import TorchCoOp  # noqa: E402

BTMRI = ("glioma tumor", "meningioma tumor", "pituitary tumor", "normal brain")
LR, MOMENTUM, WD = 0.002, 0.9, 5e-4



def jax_train_step(method, params, batch):
  """-> a zero-argument callable running one jitted, donated train step of ``method``."""
  frozen = {"backbone": params, **method.prepare(params)}
  tx = optax.chain(optax.add_decayed_weights(WD), optax.sgd(LR, momentum=MOMENTUM))
  state = {"trainable": method.init(jax.random.key(0), frozen)}
  state["opt"] = tx.init(state["trainable"])

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(trainable, opt_state, frozen, batch):
    frozen = jax.lax.stop_gradient(frozen)
    batch = step_lib.method_batch(method, method.backbone, frozen["backbone"], batch)  # the tower
    (loss, _), grads = method.value_and_grad(trainable, frozen, batch, jax.random.key(0))
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return optax.apply_updates(trainable, updates), opt_state, loss

  batch = jax.device_put(batch)

  def run():
    state["trainable"], state["opt"], loss = step(state["trainable"], state["opt"], frozen, batch)
    loss.block_until_ready()
  return run


def to_device(module, device: str):
  """``module`` on ``device``, with the plain tensor attributes the reference modules keep
  (token ids, prompt embeddings, LLM features) moved too."""
  module.to(device)
  for name, value in list(vars(module).items()):
    if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
      setattr(module, name, value.to(device))
  return module


def _torch_inputs(model, batch, device):
  to_device(model, device)
  pixels = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous().to(device)
  return pixels, torch.from_numpy(batch["label"]).long().to(device)


def _sync(device):
  if device.startswith("cuda"):
    torch.cuda.synchronize()


def torch_train_step(model, batch, device="cpu", autocast=None):
  """-> a zero-argument callable running one reference step (forward, backward, SGD).

  ``device``: where the step runs ("cuda" on a GPU); ``autocast``: e.g. ``torch.bfloat16`` to
  run the forward under ``torch.autocast`` (parameters stay fp32)."""
  params = [p for p in model.parameters() if p.requires_grad]
  opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WD)
  pixels, labels = _torch_inputs(model, batch, device)

  def run():
    with torch.autocast(device.split(":")[0], dtype=autocast, enabled=autocast is not None):
      loss = F.cross_entropy(model(pixels).float(), labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    _sync(device)
  return run


def coop_row(side, batch, **torch_kw):
  torch_model, tokenizer, backbone, params = side
  method = coop.build(backbone, Task(BTMRI), {"n_ctx": 4, "ctx_init": "a photo of a"})
  ctx = np.asarray(method.init(jax.random.key(0), {"backbone": params})["ctx"])
  ref = TorchCoOp(torch_model, tokenizer, BTMRI, ctx)
  length = method.learner.layout.ids.shape[1]
  return (f"CoOp (N_CTX 4, JAX prompts at {length} tokens)", jax_train_step(method, params, batch),
          torch_train_step(ref, batch, **torch_kw))


def torch_loss_step(model, batch, device="cpu", autocast=None):
  """-> one reference step of a module whose ``forward(pixels, labels)`` returns (loss, ...)."""
  params = [p for p in model.parameters() if p.requires_grad]
  opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WD)
  pixels, labels = _torch_inputs(model, batch, device)

  def run():
    with torch.autocast(device.split(":")[0], dtype=autocast, enabled=autocast is not None):
      loss = model(pixels, labels)[0].float()
    opt.zero_grad()
    loss.backward()
    opt.step()
    _sync(device)
  return run


def biomedcoop_row(side, batch, **torch_kw):
  """BiomedCoOp at its reference batch 4 with 50 LLM prompts per class.

  The LLM prompt features are encoded once, untimed, on both sides (the reference does it at
  construction); torch then runs the image tower twice per step, prompts at 256 tokens and the
  prompt scores in a Python loop; JAX one image forward and bucketed prompts.
  """
  torch_model, tokenizer, backbone, params = side
  batch = {k: v[:4] for k, v in batch.items()}
  prompts = {c: tuple(f"a photo of a {c}, description number {i}." for i in range(50))
             for c in BTMRI}
  method = biomedcoop.build(backbone, Task(BTMRI, llm_prompts=prompts), {"n_prompts": 50})
  llm = np.array(method.prepare(params)["llm_features"])
  ctx = np.asarray(method.init(jax.random.key(0), {"backbone": params})["ctx"])
  torch_model.requires_grad_(False)  # the reference trains the prompt learner only
  ref = TorchBiomedCoOp(torch_model, tokenizer, BTMRI, prompts, ctx,
                        dict(tau=1.5, lambda_sccm=0.5, lambda_kdsp=0.25),
                        fixed=torch.from_numpy(llm))
  return ("BiomedCoOp (batch 4, 50 LLM prompts/class)", jax_train_step(method, params, batch),
          torch_loss_step(ref, batch, **torch_kw))


def cocoop_row(side, batch, **torch_kw):
  """CoCoOp at its reference batch 1: torch runs the text tower once per image, 256 tokens."""
  torch_model, tokenizer, backbone, params = side
  batch = {k: v[:1] for k, v in batch.items()}
  method = cocoop.build(backbone, Task(BTMRI), {})
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = jax.tree.map(np.asarray, method.init(jax.random.key(0), frozen))
  torch_model.requires_grad_(False)
  ref = TorchCoCoOp(torch_model, tokenizer, BTMRI, trainable["ctx"], trainable["meta_net"],
                    "a photo of a")
  return ("CoCoOp (batch 1)", jax_train_step(method, params, batch),
          torch_loss_step(ref, batch, **torch_kw))


ROWS = {"coop": coop_row, "biomedcoop": biomedcoop_row, "cocoop": cocoop_row}


def breakdown(side, batch, steps):
  """Image-tower forward and text-tower forward+backward timed separately, both sides."""
  torch_model, tokenizer, backbone, params = side
  method = coop.build(backbone, Task(BTMRI), {})
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = method.init(jax.random.key(0), frozen)
  pixels = jax.device_put(batch["image"])
  img_fn = jax.jit(backbone.image_features)

  def text_loss(trainable, frozen):
    return method.text_features(trainable, frozen).sum()
  txt_fn = jax.jit(jax.grad(text_loss))
  ref = TorchCoOp(torch_model, tokenizer, BTMRI, np.asarray(trainable["ctx"]))
  t_pixels = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous()
  mask = (ref.tokenized != 0).long()

  def torch_text():
    hidden = torch_model.text.transformer(inputs_embeds=ref.prompts(),
                                          attention_mask=mask).last_hidden_state
    torch_model.text.proj(hidden[:, 0]).sum().backward()

  def torch_image():
    with torch.no_grad():
      torch_model.encode_image(t_pixels)
  return [
      ("  image tower forward", median_seconds(
          lambda: img_fn(params, pixels).block_until_ready(), steps),
       median_seconds(torch_image, steps)),
      ("  text tower fwd+bwd (all classes)", median_seconds(
          lambda: jax.block_until_ready(txt_fn(trainable, frozen)), steps),
       median_seconds(torch_text, steps)),
  ]


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--steps", type=int, default=3)
  ap.add_argument("--breakdown", action="store_true")
  ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of ROWS")
  args = ap.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")  # fp32 like torch; no TF32
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(args.batch, 224, 224, 3)).astype(np.float32),
           "label": (np.arange(args.batch) % len(BTMRI)).astype(np.int32)}
  print(f"device: {jax.devices()[0].device_kind}, torch threads {torch.get_num_threads()}, "
        f"batch {args.batch}, {len(BTMRI)} classes, median of {args.steps} warm steps")
  print(f"{'':44s} {'jax s':>8s} {'torch s':>8s} {'speed-up':>9s}", flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    side = method_fixture.build(pathlib.Path(tmp), "biomedclip", seed=0)
    for row in args.rows.split(","):
      name, jax_step, torch_step = ROWS[row](side, batch)
      _print_row(name, median_seconds(jax_step, args.steps),
                 median_seconds(torch_step, args.steps))
    if args.breakdown:
      for row in breakdown(side, batch, args.steps):
        _print_row(*row)


def _print_row(name, ours, ref):
  print(f"{name:44s} {ours:8.3f} {ref:8.3f} {ref / ours:8.2f}x", flush=True)


if __name__ == "__main__":
  main()
