"""How far BiomedCoOp's train-mode BatchNorm moves a frozen ResNet tower's test features.

BiomedCoOp's PMC-CLIP trainer leaves the frozen image tower in train mode (Dassl
``set_model_mode("train")`` on the registered wrapper, ``biomedcoop_pmcclip.py:330``) and calls it
twice per step on the same batch (:209 the prompted features, :223 the zero-shot features under
``no_grad``), so every step applies two momentum-0.1 updates of the running statistics; the test
pass then uses the drifted statistics. This replays that on the real BTMRI sample: batches of 4
training images (the few-shot config's ``BATCH_SIZE: 4``, ``configs/trainers/BiomedCoOp/few_shot/
btmri.yaml``), ``--steps`` steps of ``--passes`` train-mode forwards, and compares the test
split's features with the eval-mode features before training. 0.9 ** (2 * 25) = 0.5% of the
initial statistics remain after 25 steps, so a longer schedule (the config's 100 epochs) moves
them no further in expectation.

  PYTHONPATH=. python benchmarks/bn_drift.py [--preset pmcclip] [--steps 25] [--passes 2]
"""

from __future__ import annotations

import argparse
import csv
import pathlib

import jax
import numpy as np
from PIL import Image

from biomedjax.models import biomedclip as bc
from biomedjax.models import config as model_config
from biomedjax.models.clip import encode_image_train

SAMPLE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "BTMRI"


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--preset", default="pmcclip")
  ap.add_argument("--steps", type=int, default=25)
  ap.add_argument("--passes", type=int, default=2)
  ap.add_argument("--batch", type=int, default=4)
  args = ap.parse_args()
  jax.config.update("jax_default_matmul_precision", "highest")
  cfg = model_config.PRESETS[args.preset]()
  m = bc.BiomedCLIP(cfg, bc.init_params(cfg, seed=0))
  rows = list(csv.DictReader(open(SAMPLE / "manifest.csv")))
  load = lambda r: m.preprocess(Image.open(SAMPLE / "images" / r["image"]))  # noqa: E731
  train = np.stack([load(r) for r in rows if r["split"] == "train"])
  test = np.stack([load(r) for r in rows if r["split"] == "test"])
  before = np.asarray(m.encode_image(test))
  step = jax.jit(lambda p, x: encode_image_train(m.module, p, x)[1])
  rng = np.random.default_rng(0)
  params = m.params
  for _ in range(args.steps):
    x = train[rng.choice(len(train), args.batch, replace=False)]
    x = np.where(rng.random() < 0.5, x, x[:, :, ::-1])  # a flip: some augmentation
    for _ in range(args.passes):
      params = step(params, x)
  m.params = params
  after = np.asarray(m.encode_image(test))
  cos = (before * after).sum(-1) / np.linalg.norm(before, axis=-1) / np.linalg.norm(after, axis=-1)
  rel = np.linalg.norm(after - before, axis=-1) / np.linalg.norm(before, axis=-1)
  print(f"{args.preset} (random weights), {len(train)} train / {len(test)} test BTMRI images, "
        f"{args.steps} steps x {args.passes} train-mode passes, batch {args.batch}")
  print(f"test features, eval mode before vs after: cosine mean {cos.mean():.4f} min "
        f"{cos.min():.4f}; relative change mean {rel.mean():.3f} max {rel.max():.3f}")


if __name__ == "__main__":
  main()
