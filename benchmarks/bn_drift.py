"""How far BiomedCoOp's train-mode BatchNorm moves a frozen ResNet tower's test features, through
the training engine.

BiomedCoOp's PMC-CLIP trainer leaves the frozen image tower in train mode (Dassl
``set_model_mode("train")`` on the registered wrapper, ``biomedcoop_pmcclip.py:330``) and calls it
twice per step on the same batch (:209 the prompted features, :223 the zero-shot features under
``no_grad``), so every step applies two momentum-0.1 updates of the running statistics; the test
pass then uses the drifted statistics. The engine reproduces that by default
(``--config.model.tower_mode=reference``, ``biomedjax/train/tower.py``). This runs BiomedCoOp
(``configs/biomedcoop.py``: batch 4, the BTMRI row's lambdas, 50 LLM prompts per class) with
random weights of ``--preset`` on the real BTMRI sample (``--shots`` per class of its 80 training
images) for ``--epochs``, then encodes the sample's test split with the tower's eval mode under
the converted statistics (what ``tower_mode=eval`` evaluates with) and under the run's drifted
ones (read back from its trained-state file), and reports their cosine. 0.9 ** (2 * 25) = 0.5% of
the initial statistics remain after 25 steps, so a longer schedule (the config's 100 epochs)
moves them no further in expectation: the statistics then follow the last few batches.

  PYTHONPATH=. python benchmarks/bn_drift.py [--preset tiny_pmcclip] [--shots 16] [--epochs 4]
"""

from __future__ import annotations

import argparse
import pathlib
import tempfile

import jax
import numpy as np

from biomedjax.tools import trained
from biomedjax.train import loop, setup
from configs import biomedcoop

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
BTMRI = SHARED / "images" / "BTMRI"
PROMPTS = SHARED / "biomedcoop" / "prompt_ensembles.json"


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--preset", default="tiny_pmcclip")
  ap.add_argument("--shots", type=int, default=16)
  ap.add_argument("--epochs", type=int, default=4)
  ap.add_argument("--workdir", default="")
  args = ap.parse_args()
  c = biomedcoop.get_config(f"dataset=btmri,shots={args.shots},seed=1,prompts={PROMPTS}")
  c.data.split_file = str(BTMRI / "split_BTMRI.json")
  c.data.image_root = str(BTMRI / "images")
  c.model.preset, c.model.init = args.preset, ""
  c.optim.epochs = args.epochs
  c.train.progress = False
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="bn_drift_"))
  results = loop.train_and_evaluate(c, workdir)
  state = workdir / trained.STATE_FILE
  clf = trained.TrainedClassifier.load(state)
  drifted = clf.params
  converted = trained.load_backbone(trained.load(state)[1]).params
  test = setup.build_data(c.data, c.seed, workdir / "data").splits["test"]
  pixels = np.stack([clf.preprocess_file(ex.path) for ex in test.examples])
  encode = jax.jit(clf.backbone.image_features)
  before = np.asarray(encode(converted, pixels), np.float64)
  after = np.asarray(encode(drifted, pixels), np.float64)
  cos = (before * after).sum(-1) / np.linalg.norm(before, axis=-1) / np.linalg.norm(after, axis=-1)
  rel = np.linalg.norm(after - before, axis=-1) / np.linalg.norm(before, axis=-1)
  sched = results["schedule"]
  print(f"{args.preset} (random weights), BiomedCoOp {args.shots} shots x {len(clf.classnames)} "
        f"classes, {args.epochs} epochs x {sched['steps_per_epoch']} steps at batch "
        f"{c.data.batch_size} (2 train-mode tower passes per step), {len(pixels)} BTMRI test "
        "images")
  print(f"test features, eval mode under converted vs drifted statistics: cosine mean "
        f"{cos.mean():.4f} min {cos.min():.4f}; relative change mean {rel.mean():.3f} max "
        f"{rel.max():.3f}")


if __name__ == "__main__":
  main()
