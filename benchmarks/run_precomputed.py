"""One BiomedCoOp run end to end with precomputed views vs the PyTorch reference loop, one run.

A BTMRI-sized problem: 4 classes x 16 shots (64 training images, synthetic, ``--image-px``
pixels), full-size BiomedCLIP with RANDOM weights on both sides, BiomedCoOp at its reference
batch 4 with 50 LLM prompts per class, a shortened schedule of ``--epochs`` epochs
(16 steps each).

* biomedjax: ``launch``'s own ``train_and_evaluate`` with ``--config.data.views=precomputed``
  (a fresh view cache): setup (random init, LLM prompt features), the view stream encoded in
  batches of ``--encode-batch``, the gradient steps on features, checkpoints, then val/test
  evaluation and the report files. Phases are read off the run's own log lines.
* PyTorch: the reference step of ``benchmarks/train_step.py`` (``tests/parity/
  reference_biomedcoop.py``: two image-tower passes per step, prompts at 256 tokens), warm,
  median of ``--ref-steps`` steps, times the number of steps of the schedule. Its setup and
  evaluation are not counted (they would only add to its side).

  python benchmarks/run_precomputed.py [--epochs 2] [--ref-steps 3] [--encode-batch 64]
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

CLASSES = 4
SHOTS = 16
BATCH = 4


class _Clock(logging.Handler):
  """Wall time of the first log record containing each watched phrase."""

  def __init__(self, phrases):
    super().__init__(logging.INFO)
    self.phrases, self.seen = phrases, {}

  def emit(self, record):
    msg = record.getMessage()
    for p in self.phrases:
      if p in msg:
        self.seen.setdefault(p, time.time())
      if p == "step " and msg.startswith("step "):
        self.seen["last step"] = time.time()


def jax_run(tmp: pathlib.Path, args) -> dict:
  from biomedjax.train.loop import train_and_evaluate
  from configs import biomedcoop as cfg_lib
  names = [f"class_{c:02d}" for c in range(CLASSES)]
  prompts = {c: [f"a photo of a {c}, description number {i}." for i in range(50)] for c in names}
  prompt_file = tmp / "prompts.json"
  prompt_file.write_text(json.dumps({"llm_prompts": prompts}))
  config = cfg_lib.get_config(f"dataset=synthetic,shots={SHOTS},prompts={prompt_file}")
  config.model.preset, config.model.init = args.preset, ""
  config.model.compute_dtype = args.dtype
  config.data.synthetic.classes = CLASSES
  config.data.synthetic.per_class = 32  # 50/20/30: 16 train, 6 val, 10 test per class
  config.data.synthetic.size = args.image_px
  config.data.views = "precomputed"
  config.data.encode_batch = args.encode_batch
  config.data.view_cache = str(tmp / "view_cache")
  config.optim.epochs = args.epochs
  config.train.progress = False
  config.train.log_every_steps = 4
  clock = _Clock(["view cache miss", "view cache", "training ", "step ", "features val"])
  logging.getLogger("biomedjax").addHandler(clock)
  logging.getLogger("biomedjax").setLevel(logging.INFO)
  t0 = time.time()
  results = train_and_evaluate(config, tmp / "run")
  end = time.time()
  s = clock.seen
  meta = json.loads(next((tmp / "view_cache").glob("stream-*/meta.json")).read_text())
  steps = len(results["train_loss"]) and results["train_loss"][-1][0]
  return {"total": end - t0, "setup": s["view cache miss"] - t0,
          "encode": meta["encode_seconds"], "steps": steps,
          "train": s["last step"] - s["training "], "eval": end - s["last step"],
          "images": steps * BATCH}


def reference_step(tmp: pathlib.Path, args) -> float:
  """Median seconds of one warm reference BiomedCoOp step (batch 4), as train_step.py times it."""
  from benchmarks import train_step
  from tests.parity import method_fixture
  side = method_fixture.build(tmp, args.preset, seed=0)
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(BATCH, 224, 224, 3)).astype(np.float32),
           "label": (np.arange(BATCH) % CLASSES).astype(np.int32)}
  _, _, torch_step = train_step.biomedcoop_row(side, batch)
  return train_step.median_seconds(torch_step, args.ref_steps)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--epochs", type=int, default=2, help="16 steps of batch 4 each; > 1 (warmup)")
  ap.add_argument("--ref-steps", type=int, default=3)
  ap.add_argument("--encode-batch", type=int, default=64)
  ap.add_argument("--image-px", type=int, default=256, help="synthetic image side")
  ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  ap.add_argument("--preset", default="biomedclip", help="'tiny' for a smoke run")
  args = ap.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")  # fp32 like torch
  import torch
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    ref = reference_step(tmp, args)
    (tmp / "jax").mkdir()
    ours = jax_run(tmp / "jax", args)
  steps = ours["steps"]
  ref_total = ref * steps
  print(f"device: {jax.devices()[0].device_kind}, torch threads {torch.get_num_threads()}, "
        f"preset {args.preset}, {args.dtype}, {steps} steps of batch {BATCH}, "
        f"encode batch {args.encode_batch}")
  rows = [
      ("reference step (PyTorch, warm median)", f"{ref:.2f} s"),
      (f"reference run = step x {steps}", f"{ref_total:.1f} s"),
      ("biomedjax run, end to end (setup + encode + train + eval)", f"{ours['total']:.1f} s"),
      ("  setup (data, random init, LLM prompt features, compile)", f"{ours['setup']:.1f} s"),
      (f"  view stream encode ({ours['images']} images)", f"{ours['encode']:.1f} s"),
      (f"  {steps} steps on features (incl. compile, checkpoints)", f"{ours['train']:.1f} s"),
      ("  val + test evaluation, reports", f"{ours['eval']:.1f} s"),
      ("speed-up, training (encode + steps vs reference run)",
       f"{ref_total / (ours['encode'] + ours['train']):.2f}x"),
      ("speed-up, whole run vs reference training alone", f"{ref_total / ours['total']:.2f}x"),
  ]
  print("| row | value |\n|---|---|")
  for name, value in rows:
    print(f"| {name} | {value} |")


if __name__ == "__main__":
  main()
