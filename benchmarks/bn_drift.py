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
the converted statistics (what ``tower_mode=eval`` evaluates with), under the run's drifted ones
(read back from its trained-state file) and under the exact statistics of the run's training
images (one train-mode pass over all of them), and reports the cosines. With random weights the
converted statistics are those of random-normal pixels (``resnet.calibrate_stats``), far from
MRI images, so "converted vs drifted" is mostly that domain gap; "train set vs drifted" is the
part the reference's batch-of-4 running average adds. 0.9 ** (2 * 25) = 0.5% of
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

from biomedjax.models.clip import STATS
from biomedjax.models.resnet import BatchNorm
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
  data = setup.build_data(c.data, c.seed, workdir / "data")
  load = lambda split: np.stack([clf.preprocess_file(ex.path)  # noqa: E731
                                 for ex in data.splits[split].examples])
  pixels, train = load("test"), load("train")
  # The statistics of the run's whole training set (one train-mode pass over all its images,
  # eval transform): what an exact re-estimate on the target data gives, without the batch-4 noise.
  _, upd = clf.backbone.encode_pixels_train(converted, clf.backbone.normalize(train))
  m = BatchNorm.momentum
  own = {**converted, STATS: jax.tree.map(lambda old, new: (new - (1 - m) * old) / m,
                                          converted[STATS], upd[STATS])}
  encode = jax.jit(clf.backbone.image_features)
  feats = {k: np.asarray(encode(p, pixels), np.float64)
           for k, p in (("converted", converted), ("train set", own), ("drifted", drifted))}

  def cos(a, b):
    a, b = feats[a], feats[b]
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
  sched = results["schedule"]
  print(f"{args.preset} (random weights), BiomedCoOp {args.shots} shots x {len(clf.classnames)} "
        f"classes, {args.epochs} epochs x {sched['steps_per_epoch']} steps at batch "
        f"{c.data.batch_size} (2 train-mode tower passes per step), {len(pixels)} BTMRI test "
        "images")
  for a, b in (("converted", "drifted"), ("train set", "drifted"), ("converted", "train set")):
    v = cos(a, b)
    print(f"test features, eval mode under the {a} vs the {b} statistics: cosine mean "
          f"{v.mean():.4f} min {v.min():.4f}")

if __name__ == "__main__":
  main()
