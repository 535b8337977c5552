"""Every accelerator row in one run and ONE Markdown table: biomedjax vs PyTorch, fp32 vs bf16.

Run by ``benchmarks/gpu.sh`` (which installs the carried wheels first). On the machine's default
JAX backend and, for PyTorch, on ``cuda`` when it is available (else the CPU):

* encode rows: full-size BiomedCLIP image tower (uint8 -> features, batch ``--encode-batch``) and
  text tower (256 tokens; Flax also at the bucketed length), images or texts per second;
* train-step rows: CoOp (batch 32), CoCoOp (batch 1), BiomedCoOp (batch 4, 50 LLM prompts per
  class), ``benchmarks/train_step.py``'s jitted JAX step vs the reference PyTorch step, warm
  median of ``--steps`` steps;
* each of those in fp32 (JAX at "highest" matmul precision, no TF32; PyTorch's default, which
  keeps TF32 off for matmuls) and bf16 (JAX ``model.compute_dtype="bfloat16"``: bf16 towers,
  fp32 parameters and losses; PyTorch ``torch.autocast(bfloat16)``);
* the packed 16-point BiomedCoOp grid (``benchmarks/grid.py``, when present), with the
  PyTorch reference step measured here on the same device.

``BIOMEDJAX_BENCH_TINY=1`` (or ``--tiny``): the tiny preset, small batches, one timed step: a
dry run of the same code paths in a few minutes on a CPU. A row that fails prints its error in
the table instead of stopping the others.

  python benchmarks/gpu_bench.py [--tiny] [--rows encode,coop,cocoop,biomedcoop,grid]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.timing import median_seconds  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import train_step  # noqa: E402
from biomedjax.methods.base import Backbone  # noqa: E402

ROWS = ("encode", "coop", "cocoop", "biomedcoop", "grid")
HERE = pathlib.Path(__file__).resolve().parent



def with_dtype(side, dtype: str):
  """The shared model ``side`` with its JAX backbone computing in ``dtype``."""
  torch_model, tokenizer, backbone, params = side
  return torch_model, tokenizer, Backbone(backbone.module, backbone.tokenizer, dtype), params


def encode_rows(side, args, device, dtype):
  """Image and text encoding, items/s, both sides, in ``dtype``."""
  torch_model, _, backbone, params = with_dtype(side, dtype)
  b = args.encode_batch
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(b, 224, 224, 3), dtype=np.uint8)
  j_images = jax.device_put(images)
  mean = torch.tensor(backbone.cfg.image_mean).view(1, 3, 1, 1)
  std = torch.tensor(backbone.cfg.image_std).view(1, 3, 1, 1)
  t_pixels = ((torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std).to(device)
  texts = [f"a photo of a glioma tumor, description number {i}." for i in range(b)]
  ids, mask = backbone.tokenize(texts, length=None)  # the context length, as open_clip pads
  ids_b, mask_b = backbone.tokenize(texts)
  t_ids = torch.from_numpy(np.asarray(ids, np.int64)).to(device)
  img_fn = jax.jit(backbone.image_features)
  txt_fn = jax.jit(backbone.text_features)
  autocast = torch.bfloat16 if dtype == "bfloat16" else None

  def torch_fn(f):
    def run():
      with torch.inference_mode(), torch.autocast(device.split(":")[0], dtype=autocast,
                                                  enabled=autocast is not None):
        f()
      train_step._sync(device)
    return run
  steps = args.steps
  j_img = median_seconds(lambda: img_fn(params, j_images).block_until_ready(), steps)
  t_img = median_seconds(torch_fn(lambda: torch_model.encode_image(t_pixels)), steps)
  j_txt = median_seconds(lambda: txt_fn(params, ids, mask).block_until_ready(), steps)
  j_txt_b = median_seconds(lambda: txt_fn(params, ids_b, mask_b).block_until_ready(), steps)
  t_txt = median_seconds(torch_fn(lambda: torch_model.encode_text(t_ids)), steps)
  ctx = ids.shape[1]
  return [(f"image encoding, batch {b} (images/s)", dtype, b / j_img, b / t_img, "rate"),
          (f"text encoding, {ctx} tokens (texts/s)", dtype, b / j_txt, b / t_txt, "rate"),
          (f"text encoding, Flax at {ids_b.shape[1]} tokens vs torch {ctx} (texts/s)", dtype,
           b / j_txt_b, b / t_txt, "rate")]


def step_row(row: str, side, batch, args, device, dtype):
  autocast = torch.bfloat16 if dtype == "bfloat16" else None
  name, jax_step, torch_step = train_step.ROWS[row](with_dtype(side, dtype), batch,
                                                   device=device, autocast=autocast)
  return [(f"{name} train step (s)", dtype, median_seconds(jax_step, args.steps),
           median_seconds(torch_step, args.steps), "time")]


def grid_rows(args, ref_step: float | None, device_label: str):
  """benchmarks/grid.py (packed + precomputed 16-point grid) in a subprocess, fed the reference
  BiomedCoOp step measured here, so both sides are timed on this device."""
  script = HERE / "grid.py"
  if not script.is_file():
    return [("packed 16-point grid: benchmarks/grid.py not in this checkout", "fp32", None,
             None, "time")]
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "grid.json"
    cmd = [sys.executable, str(script), "--json", str(out), "--device-label", device_label]
    cmd += ["--tiny"] if args.tiny else []
    cmd += ["--torch-step", f"{ref_step:.6f}"] if ref_step else []
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.grid_timeout)
    if run.returncode != 0 or not out.is_file():
      raise RuntimeError(f"grid.py exited {run.returncode}: {run.stderr.strip()[-400:]}")
    g = json.loads(out.read_text())
  n, steps, step = g["points"], g["steps"], g["torch_step_s"]
  return [(f"packed grid, {n} points x {steps} steps, whole (s)", "fp32", g["total_s"],
           n * steps * step, "time"),
          (f"packed grid, one step of all {n} points (s)", "fp32", g["warm_step_s"], n * step,
           "time")]


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--tiny", action="store_true",
                  default=os.environ.get("BIOMEDJAX_BENCH_TINY", "") not in ("", "0"))
  ap.add_argument("--rows", default=",".join(ROWS))
  ap.add_argument("--dtypes", default="float32,bfloat16")
  ap.add_argument("--steps", type=int, default=0, help="timed steps per row (default 5, tiny 1)")
  ap.add_argument("--encode-batch", type=int, default=0, help="default 256 (tiny 8)")
  ap.add_argument("--grid-timeout", type=int, default=240)
  args = ap.parse_args()
  args.steps = args.steps or (1 if args.tiny else 5)
  args.encode_batch = args.encode_batch or (8 if args.tiny else 256)
  jax.config.update("jax_default_matmul_precision", "highest")
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cudnn.allow_tf32 = False
  preset = "tiny" if args.tiny else "biomedclip"
  label = f"JAX {jax.__version__} on {jax.devices()[0].device_kind}; torch {torch.__version__} "
  label += f"on {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}"
  rows, ref_biomedcoop = [], None
  t_start = time.time()
  from tests.parity import method_fixture
  with tempfile.TemporaryDirectory() as tmp:
    side = method_fixture.build(pathlib.Path(tmp), preset, seed=0)
    rng = np.random.default_rng(0)
    n = 4 if args.tiny else 32
    batch = {"image": rng.normal(size=(n, 224, 224, 3)).astype(np.float32),
             "label": (np.arange(n) % len(train_step.BTMRI)).astype(np.int32)}
    for row in args.rows.split(","):
      for dtype in args.dtypes.split(","):
        if row == "grid" and dtype != "float32":
          continue  # the grid runs fp32 (its reference step is the fp32 one)
        t0 = time.time()
        try:
          if row == "encode":
            got = encode_rows(side, args, device, dtype)
          elif row == "grid":
            got = grid_rows(args, ref_biomedcoop, label)
          else:
            got = step_row(row, side, batch, args, device, dtype)
            if row == "biomedcoop" and dtype == "float32":
              ref_biomedcoop = got[0][3]
        except Exception as e:  # one broken row must not hide the others
          traceback.print_exc()
          got = [(f"{row}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:120]}", dtype,
                  None, None, "time")]
        rows += got
        print(f"[{time.time() - t_start:6.1f} s] {row} {dtype}: {time.time() - t0:.1f} s",
              file=sys.stderr, flush=True)
  print(table(rows, label, preset, args))


def table(rows, label, preset, args) -> str:
  out = [f"{label}; preset {preset}; warm median of {args.steps}; "
         f"speed-up = biomedjax over PyTorch\n",
         "| row | dtype | biomedjax | PyTorch | speed-up |", "|---|---|---|---|---|"]
  for name, dtype, ours, ref, kind in rows:
    if ours is None or ref is None:
      cells = (f"{ours:.4g}" if ours else "-", f"{ref:.4g}" if ref else "-", "-")
    elif kind == "rate":
      cells = (f"{ours:.1f}", f"{ref:.1f}", f"{ours / ref:.2f}x")
    else:
      cells = (f"{ours:.4f}", f"{ref:.4f}", f"{ref / ours:.2f}x")
    out.append(f"| {name} | {dtype} | {' | '.join(cells)} |")
  return "\n".join(out)


if __name__ == "__main__":
  main()
