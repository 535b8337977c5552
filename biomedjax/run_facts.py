"""What produced a run's numbers, written into results.json so that no result can mislabel itself.

* ``effective_shots``: the training images each class really had. ``shots=16`` with a class of 15
  images trains on 15 (used whole, as the reference does); the results must say so, and the
  warning must come before training, not after.
* ``schedule`` and ``config``: epochs, batch, learning rate, ... and the whole resolved config. A
  smoke run (``runlocal``) and a full run of the same method, data, K and seed are then two
  variants for the report (``report.load_runs`` labels them by what differs), never "the same
  run".
* ``dataset_settings``: which per-dataset settings table applied and why
  (``configs.common.dataset_row``), and, for own data, which split file the name stands for.
"""

from __future__ import annotations

import logging
import pathlib

import numpy as np

log = logging.getLogger("biomedjax")

# Config keys that differ between the seeds of one experiment, not between experiments.
SEED_KEYS = ("seed", "method.attr_seed")
# Config keys that only say where things are or how the run is shown/checkpointed: two runs that
# differ in them alone are the same experiment.
HOUSEKEEPING_PREFIXES = ("train.progress", "train.log_every_steps", "train.ckpt_", "variant",
                         "run_sweep", "pack", "data.view_cache", "data.workers", "dataset_settings")


def class_counts(data) -> dict[str, int]:
  """Training images per class (after the few-shot draw and skipped images), by class name."""
  source = data.splits["train"]
  if hasattr(source, "examples"):  # image files: labels without reading the images
    labels = np.asarray([ex.label for ex in source.examples])
  else:
    labels = np.asarray([source[i]["label"] for i in range(len(source))])
  counts = np.bincount(labels, minlength=len(data.classnames))
  return {name: int(n) for name, n in zip(data.classnames, counts)}


def effective_shots(data, shots: int) -> dict[str, int]:
  """{class: images it trains on} for a K-shot multiclass run; {} otherwise."""
  if shots <= 0 or data.kind != "multiclass":
    return {}
  return {c: min(n, shots) for c, n in class_counts(data).items()}


def warn_short_classes(data, shots: int) -> dict[str, int]:
  """Logs (before training) the classes with fewer than K training images; returns them."""
  short = {c: n for c, n in effective_shots(data, shots).items() if n < shots}
  if short:
    log.warning("K=%d but %d class(es) have fewer training images and are used whole "
                "(effective K: %s); results.json/results.md record it", shots, len(short),
                ", ".join(f"{c}={n}" for c, n in short.items()))
  return short


def flat_config(config) -> dict:
  """The resolved config as {"optim.lr": 0.002, ...} (JSON values)."""
  out = {}

  def walk(node, prefix):
    for k, v in node.items():
      if hasattr(v, "items"):
        walk(v, f"{prefix}{k}.")
      else:
        out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
  walk(config, "")
  return out


def schedule(config, num_train: int) -> dict:
  """The training schedule in a few keys (results.md prints it; the report compares configs).
  ``batch_size`` is the global batch the run used: ``data.batch_size`` capped at the training
  set's size, as the loop does (``loop._batch_and_steps``)."""
  from biomedjax.data import epoch_batches
  batch = min(config.data.batch_size, num_train)
  per_epoch = epoch_batches.steps_per_epoch(num_train, batch,
                                            config.data.get("last_batch", "drop"))
  from biomedjax.methods import METHODS
  method = METHODS.get(config.method.name)
  stages = list(method.stages) if method else ["train"]  # "fit" alone: no SGD
  if method and not method.fit_needs_data:
    stages = []  # zero-shot: nothing is fitted
  return {"stages": stages,
          "epochs": config.optim.epochs, "batch_size": batch,
          "config_batch_size": config.data.batch_size, "steps_per_epoch": per_epoch,
          "lr": config.optim.lr, "optimizer": config.optim.name,
          "lr_schedule": config.optim.schedule, "warmup_epochs": config.optim.warmup_epochs,
          "image_size": config.data.image_size}


def record(config, data) -> dict:
  """The keys this module adds to results.json."""
  out = {"schedule": schedule(config, len(data.splits["train"])), "config": flat_config(config),
         "dataset_settings": config.get("dataset_settings", "")}
  if config.data.split_file:
    out["split_file"] = str(config.data.split_file)
  # Absolute, for tools run from another folder (predict --split).
  out["data_paths"] = {k: str(pathlib.Path(config.data[k]).resolve())
                       for k in ("split_file", "image_root") if config.data.get(k)}
  eff = effective_shots(data, config.data.shots)
  if eff:
    out["effective_shots"] = eff
  return out


def experiment_key(results: dict) -> dict:
  """The config of a run without its seed and housekeeping keys: two runs with the same key and
  seed are true duplicates; different keys are variants."""
  return {k: v for k, v in results.get("config", {}).items()
          if k not in SEED_KEYS and not k.startswith(HOUSEKEEPING_PREFIXES)}


def short_k_text(results: dict) -> str:
  """``" (effective K < 16: normal=15)"`` for a run with short classes, else ""."""
  eff, k = results.get("effective_shots") or {}, results.get("shots", 0)
  short = {c: n for c, n in eff.items() if n < k}
  if not short:
    return ""
  return f" (effective K < {k}: {', '.join(f'{c}={n}' for c, n in short.items())})"
