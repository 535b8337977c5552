"""Evaluation: frozen image features computed once per split, then logits and metrics.

Methods with ``inputs="features"`` get the frozen image features of the eval transform, encoded
once per run and reused for val and test (and by a "fit" stage). Pixel-space methods get logits
batch by batch from the images. Metrics follow the task's kind: the multiclass report (accuracy,
balanced accuracy, macro-F1, per-class P/R/F1, confusion, NLL, ECE) or the multilabel one
(per-label P/R/F1, macro-F1, exact match, LRAP, coverage error, ranking loss, AUROC).
Every example is counted exactly once: eval batches are padded and the padding is masked out.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from biomedjax.evaluation import calibration, metrics
from biomedjax.data import pipeline


def eval_batch_size(requested: int, mesh) -> int:
  """The eval batch rounded up to a multiple of the mesh size (the padding is masked)."""
  n = mesh.shape["data"]
  return math.ceil(requested / n) * n


def map_images(fn, source, mesh, data_cfg, desc: str, progress: bool = True):
  """Applies ``fn(pixels) -> (B, ...)`` to every example of a source once -> (outputs, labels)."""
  batch = eval_batch_size(data_cfg.test_batch_size, mesh)
  it = pipeline.make_eval_iterator(source, mesh=mesh, global_batch_size=batch,
                                   image_size=data_cfg.image_size, **pipeline.reading(data_cfg))
  outs, labels = [], []
  for b in tqdm(it, total=math.ceil(len(source) / batch), desc=desc, disable=not progress,
                leave=False):
    out = multihost_utils.process_allgather(fn(b["image"]), tiled=True)
    mask = multihost_utils.process_allgather(b["mask"], tiled=True).astype(bool)
    label = multihost_utils.process_allgather(b["label"], tiled=True)
    outs.append(np.asarray(out)[mask])
    labels.append(np.asarray(label)[mask])
  return np.concatenate(outs), np.concatenate(labels)


def report(logits, labels, classnames, kind: str = "multiclass") -> dict:
  """The kind's metrics; multiclass adds the calibration reference's block (ECE/MCE/ACE...)."""
  logits = np.asarray(logits, np.float64)
  if kind == "multilabel":
    return metrics.multilabel_report(logits, labels, classnames)
  out = metrics.classification_report(logits, labels, classnames)
  out["calibration"] = calibration.calibration_report(logits, labels, classnames)
  return out


PREDICTIONS_DIR = "predictions"


def save_predictions(workdir, split: str, logits, labels, classnames) -> None:
  """``<workdir>/predictions/<split>.npz``: the eval logits, labels and class names, in split
  order, so any metric (or a calibration fit) can be recomputed without re-running the model."""
  out = pathlib.Path(workdir) / PREDICTIONS_DIR
  out.mkdir(parents=True, exist_ok=True)
  tmp = out / f".{split}.tmp.npz"
  np.savez(tmp, logits=np.asarray(logits, np.float32), labels=np.asarray(labels),
           classnames=np.asarray(classnames))
  tmp.replace(out / f"{split}.npz")


def summary(result: dict, kind: str) -> str:
  """One log line of the headline numbers."""
  if kind == "multilabel":
    return (f"macro-F1 {100 * result['macro_f1']:.2f}%, exact match "
            f"{100 * result['exact_match']:.2f}%, LRAP {result['lrap']:.4f}")
  cal = result["calibration"]
  return (f"accuracy {100 * result['accuracy']:.2f}%, macro-F1 {100 * result['macro_f1']:.2f}%, "
          f"ECE {100 * result['ece']:.2f}% (15 bins); reference (10 bins): ECE {cal['ece']:.2f}%"
          f", MCE {cal['mce']:.2f}%, ACE {cal['ace']:.2f}%")
