"""Every config key with its default: the only place defaults live.

Method configs (``configs/<method>.py``) call ``get_config(arg)`` here and override their block.
Field names equal what the consuming code reads, and launch.py locks the config, so a typo in
``--config.optim.lr`` is an error instead of a silently ignored setting.
"""

from __future__ import annotations

import ml_collections as mlc

from biomedjax import objectives
from biomedjax.methods import options as method_options
from configs import common

# Every config file's string argument accepts these (plus its own extras).
RUN_ARGS = dict(dataset="btmri", shots=16, seed=1, setting="few_shot", root="data",
                model="", runlocal=False)


def get_config(a: mlc.ConfigDict) -> mlc.ConfigDict:
  """The base config for the parsed run arguments ``a`` (see ``RUN_ARGS``)."""
  c = mlc.ConfigDict()
  c.seed = a.seed
  c.run_sweep = False  # True: launch.py runs this file's sweep (the demo does)
  c.pack = False  # True: a sweep that runs trains its points as packs (launch.py --sweep=packed)
  c.variant = ""  # the run's label in a sweep's report, e.g. "method.w=1.0" (launch.py --grid)
  c.study_cell = ""  # a study table's cell, e.g. CalibPrompt's "calib:<backbone>:<objective>"
  # Which per-dataset settings table applied and why (common.dataset_row); logged, in results.md
  c.dataset_settings = "none (the method has the same settings for every dataset)"

  c.model = mlc.ConfigDict(dict(
      init=a.model,          # converted BiomedCLIP dir (python -m convert.biomedclip); "" = random
      preset="biomedclip",   # architecture used when init is "" (random weights)
      # init "": a tokenizer folder for the random weights ("" = a vocabulary generated from the
      # run's words; thousands of words, e.g. natural-image attribute files, need a real one)
      tokenizer="",
      compute_dtype="float32",  # dtype the towers compute in: "float32" or "bfloat16"
      remat=False,           # jax.checkpoint the image tower's blocks (memory for recompute)
      # "reference": a BatchNorm tower in train mode while training where the method's reference
      # puts it there (BiomedCoOp on PMC-CLIP; biomedjax/train/tower.py); "eval": always eval
      tower_mode="reference",
      # the mean/std images are standardised with: "model" (the model config's own, e.g.
      # MedCLIP's grayscale 0.5863/0.2795) or "clip" (OpenAI CLIP's, what a Dassl trainer yaml's
      # INPUT.PIXEL_MEAN/STD sets for any backbone)
      pixel_norm="model",
  ))
  c.data = mlc.ConfigDict(dict(
      dataset=a.dataset,     # catalog key, "synthetic", "synthetic_multilabel", or any name
                             # with split_file + image_root
      root=a.root,           # reference layout: <root>/<Name>/<Name>/... and split_<Name>.json
      split_file="",         # overrides the catalog's split file
      image_root="",         # overrides the catalog's image folder
      prepared="",           # dir written by `python -m biomedjax.data.prepare` (ArrayRecord)
      source="files",        # "files" (split files) | "tfds": tensorflow-datasets' own split
      tfds_data_dir="",      # source="tfds": the prepared tfds data ("" = tfds's default)
      layout="",             # "calibprompt": <root>/<dataset>/images/{train,test}/<folder>/
      sort_paths=True,       # calibprompt layout: sort files before few-shot sampling
      epoch_drop_last=False,  # True: drop each epoch's partial batch (Dassl's train loader)
      random_flip=False,     # train augmentation: horizontal flip (p 0.5) after the crop
      train_resize_first=False,  # train: Resize(image_size, bicubic) before the random crop
      last_batch="drop",     # "keep": each epoch's partial batch is a step (ceil(n/B) per epoch)
      shots=a.shots,         # K per class (0 = the whole training split)
      setting=a.setting,     # "few_shot" or "base2novel"
      batch_size=32,         # GLOBAL train batch
      test_batch_size=100,
      image_size=224,
      workers=0,             # grain worker processes for decoding/augmentation
      read_ahead=-1,         # batches decoded ahead per process (-1: 2 per core; 0: none)
      # Training views of inputs="features" methods (biomedjax/train/view_stream.py): "online"
      # (the tower runs in every step), "precomputed" (the same views encoded once, cached and
      # shared by runs with the same key), or "cached:V" (V views per image, one drawn per
      # step: an approximation of the protocol).
      views="online",        # "online" | "precomputed" | "cached:V" (training views)
      encode_batch=256,      # images per tower call when encoding precomputed/cached views
      view_cache="",         # cache root; "" = $BIOMEDJAX_VIEW_CACHE or ~/.cache/biomedjax/views
      skip_bad_images=False,
      template="a photo of a {}.",
      llm_prompts="",        # prompt-ensemble JSON ({"llm_prompts": {class: [...]}})
      synthetic=mlc.ConfigDict(dict(classes=4, per_class=40, size=64)),
  ))
  c.method = mlc.ConfigDict(dict(name=""))
  # The data term of the training loss (biomedjax/objectives.py): "auto" = softmax CE for
  # multiclass tasks, sigmoid BCE for multilabel ones; label smoothing in either convention.
  c.loss = mlc.ConfigDict(dict(objectives.DEFAULTS))
  c.optim = mlc.ConfigDict(dict(
      name="sgd", lr=0.002, momentum=0.9, weight_decay=5e-4, epochs=100, warmup_epochs=1,
      warmup_lr=1e-5, schedule="cosine", grad_clip=0.0,
  ))
  c.train = mlc.ConfigDict(dict(
      log_every_steps=20,
      ckpt_every_steps=0,       # extra checkpoints every N steps (0: none); every epoch always
      ckpt_every_minutes=10.0,  # and every N minutes of training, whichever comes first
      ckpt_min_seconds=30.0,    # but no end-of-epoch save within N s of the last (tiny epochs)
      progress=True,            # tqdm progress bars
      # > 0: stop after this many epochs without a val-loss gain of min_delta, and evaluate the
      # best epoch (0 = off)
      early_stopping_patience=0, early_stopping_min_delta=1e-4,
  ))
  # Post-hoc temperature scaling ("fit": one T by NLL on val, or on the few-shot train set when
  # there is no val split) and reliability diagrams ("all" | "overall" | "none"); see
  # biomedjax/train/calibrate.py.
  # eval.select: the reported state (biomedjax/train/test_selection.py); best_test is the VR
  # references' model selection on the test set, their Best Acc being logged before the update.
  c.eval = mlc.ConfigDict(dict(
      temperature="none", reliability="all",
      select="last",       # "last" | "best_test" (full test split every epoch, best reported)
      best_over="logged",  # best_test over epochs 1..E-1 ("logged", the reference's) or "all"
  ))
  if a.runlocal:  # a smoke run of the same code path
    c.optim.epochs = 2
    c.data.test_batch_size = 16
  return c


def parse(arg, **extra) -> mlc.ConfigDict:
  """The run arguments; a sweep grid in ``arg`` (``datasets=a+b,shots=1+4``) gives its first
  point here (launch.py refuses a grid without ``--sweep``)."""
  rest, grid = common.sweep_grid(arg)
  a = common.parse_arg(rest, **RUN_ARGS, **extra)
  for axis, key in (("datasets", "dataset"), ("shots", "shots"), ("seeds", "seed")):
    if axis in grid:
      a[key] = grid[axis][0]
  return a


def sweep(add, arg=None, **extra_args) -> None:
  """The benchmark grid every method config sweeps: datasets x K x seeds, or with
  ``setting=base2novel`` in ``arg`` datasets x seeds at 16 shots (the reference's protocol).

  launch.py merges the command's own config arguments (``model``, ``root``, ...) into every
  point, so they need no carrying here. ``extra_args`` declares a config file's extra keys.
  The command may name the grid (``datasets=btmri+busi,shots=1+4,seeds=1+2``, see
  ``common.sweep_grid``); the axes it names replace the benchmark's.
  """
  rest, grid = common.sweep_grid(arg)
  if parse(rest, **extra_args).setting == "base2novel":
    common.fewshot_grid(add, **{"shots": (16,), **grid}, setting="base2novel")
  else:
    common.fewshot_grid(add, **grid)


def method_config(options_cls, name: str, **overrides) -> mlc.ConfigDict:
  """``config.method``: every field of the method's options dataclass (its defaults are the
  reference's) with this config's ``overrides``; each can be set with --config.method.<field>."""
  return method_options.config_block(options_cls, name, **overrides)
