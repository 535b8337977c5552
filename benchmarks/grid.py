"""A 16-point BiomedCoOp grid (lambda_SCCM x lambda_KDSP, 4 x 4): one pack vs 16 reference runs.

BTMRI-sized: 4 classes, 16 shots (64 training images of 224x224, synthetic), batch 4, 50 LLM
prompts per class, full-size BiomedCLIP with random weights shared by both sides (converted in
memory by the real mapping), fp32, a shortened schedule of ``--steps`` steps (default 8).

* JAX: the packed trainer of ``--sweep=packed`` (``biomedjax.train.packed.PackProgram``): the 16
  points' options as traced scalars, one jitted, vmapped step per batch, batches from the engine's
  train iterator (decode + RandomResizedCrop of the synthetic PNGs), the frozen image tower once
  per batch. Timed end to end: the LLM prompt features (once per pack), init, compilation and
  every step; "warm step" is the median of the steps after the first.
* PyTorch: the reference BiomedCoOp step of benchmarks/train_step.py
  (``tests/parity/reference_biomedcoop.py``: two image-tower passes per batch, prompts at 256
  tokens, the prompt scores in a Python loop, backward, SGD), median of ``--torch-steps`` warm
  steps, half timed before the pack and half after (a shared machine's load drifts); the 16 runs
  cost 16 x steps x that. Their per-run setup (building the model, encoding
  the 200 LLM prompts at 256 tokens, which every reference run does) is NOT counted, so the
  ratio favours the reference.

  python benchmarks/grid.py [--steps 8] [--torch-steps 4] [--views online]
  python benchmarks/grid.py --tiny          # tiny random preset, 2 steps: a smoke run (< 1 min)
  python benchmarks/grid.py --torch-step 6.35 --device-label "H200"   # reuse a measured step
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from biomedjax.data.pipeline import make_train_iterator  # noqa: E402
from biomedjax.methods import biomedcoop  # noqa: E402
from biomedjax.methods.base import Task  # noqa: E402
from biomedjax.train import packed, setup, sharding, view_stream  # noqa: E402
from configs import biomedcoop as biomedcoop_config  # noqa: E402

BTMRI = ("glioma tumor", "meningioma tumor", "pituitary tumor", "normal brain")
LAMBDAS = (0.25, 0.5, 1.0, 2.0)  # each of lambda_SCCM and lambda_KDSP: 4 x 4 points


def grid_values(lambdas=LAMBDAS) -> dict[str, list[float]]:
  pairs = [(s, k) for s in lambdas for k in lambdas]
  return {"method.lambda_sccm": [s for s, _ in pairs], "method.lambda_kdsp": [k for _, k in pairs]}


def grid_config(tmp: pathlib.Path, shots: int, views: str):
  """BiomedCoOp's BTMRI config on a synthetic 4-class set of 224x224 PNGs (K per class)."""
  config = biomedcoop_config.get_config(f"dataset=synthetic,shots={shots},prompts=unused")
  config.data.synthetic.size = 224
  config.data.synthetic.per_class = 2 * shots  # 50% train
  config.data.views, config.data.view_cache = views, str(tmp / "view_cache")  # a fresh cache
  return config


def short_stream(config, steps: int):
  """A short schedule's views fit one encode batch: encode exactly them (steps x batch images),
  not a chunk padded to the default 256."""
  config.data.encode_batch = min(config.data.encode_batch, steps * config.data.batch_size)
  return config


def jax_grid(side, prompts, config, data, n_prompts: int, steps: int) -> dict:
  """The pack end to end: prepare, (encode the views,) init, compile, ``steps`` steps."""
  _, _, backbone, params = side
  source = data.splits["train"]
  values = grid_values()
  size = len(values["method.lambda_sccm"])
  t0 = time.perf_counter()
  method = biomedcoop.build(backbone, Task(BTMRI, llm_prompts=prompts), {"n_prompts": n_prompts})
  mesh = sharding.make_mesh(config.data.batch_size)
  frozen = sharding.replicate({"backbone": params, **method.prepare(params)}, mesh)
  jax.block_until_ready(frozen)
  t_prepare = time.perf_counter() - t0
  per_epoch = len(source) // config.data.batch_size
  prog = packed.PackProgram(method, backbone, config, per_epoch, values, size)
  rng = jax.random.key(1)
  trainable, opt_state = prog.init(jax.random.fold_in(rng, 1), frozen)
  step = prog.make_step(mesh)
  it = make_train_iterator(source, mesh=mesh, global_batch_size=config.data.batch_size, seed=1,
                           image_size=config.data.image_size)
  t = time.perf_counter()
  it = view_stream.train_iterator(config, method, params, data, mesh,
                                  (config.data.batch_size, per_epoch, steps), it)
  t_views = time.perf_counter() - t
  times = []
  for i in range(steps):
    t = time.perf_counter()
    trainable, opt_state, _, m = step(trainable, opt_state, {}, frozen, next(it), rng,
                                      jnp.int32(i))
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  total = time.perf_counter() - t0
  assert np.all(np.isfinite(m["loss"])) and m["loss"].shape == (size,)
  return {"points": size, "prepare_s": t_prepare, "views_s": t_views, "first_step_s": times[0],
          "warm_step_s": statistics.median(times[1:]) if steps > 1 else times[0],
          "total_s": total}


def torch_stepper(side, prompts, n_prompts: int, llm):
  """-> a zero-argument callable running one reference BiomedCoOp step (train_step.py's)."""
  import torch
  import train_step
  from tests.parity.reference_biomedcoop import TorchBiomedCoOp
  torch_model, tokenizer, backbone, params = side
  method = biomedcoop.build(backbone, Task(BTMRI, llm_prompts=prompts), {"n_prompts": n_prompts})
  ctx = np.asarray(method.init(jax.random.key(0), {"backbone": params})["ctx"])
  torch_model.requires_grad_(False)  # the reference trains the prompt learner only
  ref = TorchBiomedCoOp(torch_model, tokenizer, BTMRI, prompts, ctx,
                        dict(tau=1.5, lambda_sccm=0.5, lambda_kdsp=0.25),
                        fixed=torch.from_numpy(np.array(llm)))
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(4, 224, 224, 3)).astype(np.float32),
           "label": np.arange(4, dtype=np.int32)}
  return train_step.torch_loss_step(ref, batch)


def timed(fn, n: int) -> list[float]:
  out = []
  for _ in range(n):
    t = time.perf_counter()
    fn()
    out.append(time.perf_counter() - t)
  return out


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--steps", type=int, default=8, help="schedule length of every grid point")
  ap.add_argument("--torch-steps", type=int, default=4,
                  help="warm reference steps to time, half before and half after the pack")
  ap.add_argument("--torch-step", type=float, default=0.0,
                  help="seconds of one reference step measured elsewhere (skips torch here)")
  ap.add_argument("--tiny", action="store_true", help="tiny random preset, 2 steps: smoke run")
  ap.add_argument("--device-label", default="", help="the machine, for the table's title")
  ap.add_argument("--json", default="", help="also write the numbers to this file")
  ap.add_argument("--views", default="precomputed", choices=("precomputed", "online"),
                  help="data.views of the pack: the steps' views encoded in one pass first, or "
                       "the tower in every step")
  args = ap.parse_args(argv)
  jax.config.update("jax_default_matmul_precision", "highest")  # fp32 like torch; no TF32
  preset, n_prompts = ("tiny", 6) if args.tiny else ("biomedclip", 50)
  steps = 2 if args.tiny else args.steps
  if args.tiny:
    args.torch_steps = 2
  from tests.parity import method_fixture
  from tests.methods.test_biomedcoop import synthetic_prompts
  prompts = {c: tuple(f"a photo of a {c}, description number {i}." for i in range(n_prompts))
             for c in BTMRI}
  if args.tiny:  # the tiny vocabulary has no "description"/"number": its own prompt forms
    prompts = {k: tuple(v) for k, v in synthetic_prompts(BTMRI, n_prompts)["llm_prompts"].items()}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    side = method_fixture.build(tmp / "model", preset, seed=0)
    config = grid_config(tmp, 16, args.views)
    short_stream(config, steps)
    data = setup.build_data(config.data, config.seed, tmp / "data")
    load = [os.getloadavg()[0]]
    torch_times = []
    if not args.torch_step:  # reference steps before AND after the pack: a shared machine's
      # load drifts, and both sides should see the same mix of it
      method = biomedcoop.build(side[2], Task(BTMRI, llm_prompts=prompts), {"n_prompts": n_prompts})
      torch_step = torch_stepper(side, prompts, n_prompts, method.prepare(side[3])["llm_features"])
      torch_step()  # warm
      torch_times += timed(torch_step, max(1, args.torch_steps // 2))
    ours = jax_grid(side, prompts, config, data, n_prompts, steps)
    load.append(os.getloadavg()[0])
    if not args.torch_step:
      torch_times += timed(torch_step, max(1, args.torch_steps - args.torch_steps // 2))
    load.append(os.getloadavg()[0])
    ref_step = args.torch_step or statistics.median(torch_times)
  n = ours["points"]
  ref_total = n * steps * ref_step
  label = args.device_label or jax.devices()[0].device_kind
  rows = [
      (f"whole grid: {n} points x {steps} steps (JAX: prompts + init + compile + steps)",
       ours["total_s"], ref_total),
      (f"one step of all {n} points (JAX warm packed step vs {n} reference steps)",
       ours["warm_step_s"], n * ref_step),
      ("  JAX first step (compilation included)", ours["first_step_s"], None),
      ("  JAX LLM prompt features + method build (once per pack)", ours["prepare_s"], None),
      (f"  JAX view stream ({args.views}: encode all steps' views once)", ours["views_s"], None),
  ]
  print(f"\n{preset} BiomedCoOp grid, views {args.views}, {label}; PyTorch reference step "
        f"{ref_step:.3f} s ({'given' if args.torch_step else 'measured on CPU'}: "
        f"{' '.join(f'{t:.2f}' for t in torch_times)} s); load average {load}\n")
  print("| row | JAX packed | PyTorch 16 runs | speed-up |\n|---|---|---|---|")
  for name, a, b in rows:
    print(f"| {name} | {a:.2f} s | {f'{b:.2f} s' if b else '-'} | "
          f"{f'{b / a:.2f}x' if b else '-'} |")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps({**ours, "torch_step_s": ref_step,
                                                   "torch_steps_s": torch_times, "load": load,
                                                   "steps": steps, "preset": preset}, indent=2))


if __name__ == "__main__":
  main()
