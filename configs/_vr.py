"""The visual-reprogramming protocol VP, AR, AttrVR and BioMedVR share (JXLiu-AI/BioMedVR,
inherited from tmlr-group/AttrVR).

* Frozen OpenAI CLIP ViT-B/16 (``model.preset="clip_vit_b16"`` for random weights; pass a
  converted checkpoint with ``model=...``); only the programs (and BioMedVR's gate) train.
* SGD lr 40, momentum 0.9, no weight decay, per-ITERATION cosine ``lr_t = 20 (1 + cos(pi t / T))``
  with T = epochs * steps per epoch and no warmup (``optim.schedule="cosine_steps"``).
* Batch 64 (16 at 1-shot), the last partial batch kept, reshuffled each epoch; images at S
  (``data.image_size`` = ``method.image_size``: 192, VP 224), Resize -> RandomResizedCrop -> flip
  in training, Resize -> CenterCrop at test, never normalised by the pipeline (the program does).
* Reported: the best test accuracy over epochs (``eval.select="best_test"``, the reference's test-
  set model selection), with the last epoch's beside it; ``eval.select="last"`` skips the per-epoch
  test evaluation.
* Few-shot images: every run seed trains on the seed-1 draw (``data.split_seed=1``). The
  reference builds each dataset with ``seed=0`` whatever ``--seed`` (the experiments'
  ``from tools import *`` makes ``build_loader`` = ``tools.build_loader(..., seed=0)``, tools.py:
  113-133; ``datasets/build_loader.py:58`` passes ``seed=0`` too), so its few-shot cache is
  ``split_fewshot/shot_K-seed_0.pkl`` for every run: the first run draws it (Python ``random``
  after ``set_seed(run seed)``, Dassl's ``generate_fewshot_dataset``) and the later seeds load
  it. With the seeds run in order 1, 2, 3 that is the seed-1 draw. ``data.split_seed=0``: each
  run draws its own images with its seed (METHODS §2).
* Natural-image datasets (``biomedjax/data/natural.py``): CoOp's layout, same protocol.
  BioMedVR has no confusion files for them; the reference then zeroes the negative expert
  (``method.negative="zeros"``, set here for them).
* Attribute methods read ``<attributes_dir>/<attributes_dataset>_{des,dist,confuse}.json``;
  ``attributes_dataset`` defaults to the reference's key of ``dataset`` and the sentence draws
  are seeded by the config string's ``seed`` (``method.attr_seed``; a ``--config.seed`` override
  leaves it, so set ``--config.method.attr_seed`` with it).
"""

from __future__ import annotations

import dataclasses

import ml_collections as mlc

from biomedjax.data import natural
from biomedjax.methods import attributes
from configs import base

BATCH, BATCH_1SHOT = 64, 16
REFERENCE_SPLIT_SEED = 1  # the draw every seed shares (see above)


def get_config(arg, options_cls, name: str, epochs: int, **overrides) -> mlc.ConfigDict:
  a = base.parse(arg)
  c = base.get_config(a)
  fields = {f.name for f in dataclasses.fields(options_cls)}
  if "attributes_dataset" in fields:
    overrides = {"attributes_dataset": attributes.attribute_key(a.dataset),
                 "attr_seed": a.seed, **overrides}
  if "negative" in fields and natural.is_natural(a.dataset):
    overrides = {"negative": "zeros", **overrides}
  c.method = base.method_config(options_cls, name, **overrides)
  c.model.preset = "clip_vit_b16"
  c.data.batch_size = BATCH_1SHOT if a.shots == 1 else BATCH
  c.data.image_size = c.method.image_size
  c.optim.update(name="sgd", lr=40.0, momentum=0.9, weight_decay=0.0, warmup_epochs=0,
                 warmup_lr=0.0, schedule="cosine_steps", grad_clip=0.0)
  c.optim.epochs = 2 if a.runlocal else epochs
  # set by the VR data protocol
  c.data.train_resize_first = True
  c.data.random_flip = True
  c.data.last_batch = "keep"
  c.data.split_seed = REFERENCE_SPLIT_SEED
  c.eval.select = "best_test"
  return c


def sweep(add, arg=None):
  """Datasets x K x seeds, as every few-shot config."""
  base.sweep(add, arg)
