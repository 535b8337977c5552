"""``eval.select``: which trained state a run reports, the last epoch's or the best test epoch's.

* ``"last"`` (default): the state after the last step; no evaluation during training.
* ``"best_test"``: the visual-reprogramming references' protocol (BioMedVR/AttrVR
  ``experiments/*.py``): the FULL test split is evaluated after every epoch and the reported
  number is the best test accuracy over epochs, i.e. model selection on the test set. A quirk of
  those scripts is kept by default: their loop logs ``Best Acc`` *before* updating it with the
  epoch's accuracy, and the last logged value is the one reported, so the best covers epochs
  1..E-1 and never the last epoch (``eval.best_over="logged"``); ``best_over="all"`` takes the
  max over 1..E. Ties keep the earliest epoch (the reference updates on ``>``).

The headline state is then the best epoch's (the reference saves it as ``best.pth``): the run's
val/test reports, predictions and ``trained_state.safetensors`` are of that state, and
``results.json["selection"]`` records both numbers, the per-epoch accuracies and which selection
produced the headline. The last epoch's accuracy is always recorded beside it.

Resumable: the per-epoch accuracies and the best state are written with every checkpoint
(``test_selection.json`` + ``test_selection_best.npz`` in the workdir) and cut back to the
checkpoint's step on resume, so an interrupted run reports what an uninterrupted one would.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib

import jax
import numpy as np

from biomedjax.train import control, sharding

log = logging.getLogger("biomedjax")

SELECTS = ("last", "best_test")
BEST_OVER = ("logged", "all")
STATE_FILE = "test_selection.json"
BEST_FILE = "test_selection_best.npz"


def check(config, kind: str, trains: bool) -> None:
  """Errors for settings ``best_test`` is not defined for (before anything is written)."""
  select = config.eval.get("select", "last")
  if select not in SELECTS:
    raise ValueError(f"config.eval.select={select!r}: use one of {SELECTS}")
  best_over = config.eval.get("best_over", "logged")
  if best_over not in BEST_OVER:
    raise ValueError(f"config.eval.best_over={best_over!r}: use one of {BEST_OVER}")
  if select != "best_test":
    return
  if kind != "multiclass":
    raise ValueError("config.eval.select='best_test' selects by test accuracy: defined for "
                     f"single-label (multiclass) data, not {kind!r}")
  if config.data.setting != "few_shot":
    raise ValueError("config.eval.select='best_test' is defined for setting='few_shot'")
  if config.train.get("early_stopping_patience", 0):
    raise ValueError("config.eval.select='best_test' and config.train.early_stopping_patience "
                     "both pick the reported epoch: set one of them")
  if not trains:
    raise ValueError("config.eval.select='best_test' needs a method with gradient training "
                     "(there are no epochs to select from)")


class TestSelection:
  """Per-epoch test accuracy and the best state so far (see module doc)."""

  def __init__(self, workdir, accuracy_fn, epochs: int, best_over: str = "logged"):
    self.dir = pathlib.Path(workdir)
    self.accuracy_fn = accuracy_fn  # trainable -> test accuracy (full split)
    self.epochs, self.best_over = epochs, best_over
    self.accuracies: list[float] = []  # epoch e (1-based) at index e - 1
    self.best_epoch: int | None = None
    self.best_state = None  # host numpy leaves of the best epoch's trainable

  def counts(self, epoch: int) -> bool:
    """Whether ``epoch``'s accuracy may become the best (the reference never counts the last)."""
    return self.best_over == "all" or epoch < self.epochs

  def update(self, epoch: int, trainable) -> float:
    acc = float(self.accuracy_fn(trainable))
    del self.accuracies[epoch - 1:]
    self.accuracies.append(acc)
    if control.decide(self.counts(epoch) and (self.best_epoch is None or
                                              acc > self.accuracies[self.best_epoch - 1])):
      self.best_epoch = epoch
      self.best_state = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(trainable))]
    best = "-" if self.best_epoch is None else (
        f"{100 * self.accuracies[self.best_epoch - 1]:.2f}% at epoch {self.best_epoch}")
    log.info("epoch %d: test accuracy %.2f%% (best %s)", epoch, 100 * acc, best)
    return acc

  # -- persistence beside the checkpoints ---------------------------------------------------
  def save(self) -> None:
    if jax.process_index() != 0:
      return
    if self.best_state is not None:
      tmp = self.dir / f".{BEST_FILE}.tmp{os.getpid()}.npz"
      np.savez(tmp, *self.best_state)
      os.replace(tmp, self.dir / BEST_FILE)
    tmp = self.dir / f".{STATE_FILE}.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"accuracies": self.accuracies, "best_epoch": self.best_epoch}))
    os.replace(tmp, self.dir / STATE_FILE)

  def restore(self, completed_epochs: int, template) -> None:
    """Back to the state after ``completed_epochs`` (the checkpoint's), reading the files."""
    path = self.dir / STATE_FILE
    if not path.is_file():
      return
    state = json.loads(path.read_text())
    self.accuracies = [float(a) for a in state["accuracies"][:completed_epochs]]
    best = state["best_epoch"]
    if best is not None and best <= completed_epochs and (self.dir / BEST_FILE).is_file():
      with np.load(self.dir / BEST_FILE) as f:
        leaves = [f[f"arr_{i}"] for i in range(len(f.files))]
      if len(leaves) == len(jax.tree.leaves(template)):
        self.best_epoch, self.best_state = best, leaves
        return
    # Files from a later save than the checkpoint (cannot happen: both are written together)
    # or damaged: start the best over from the checkpoint on.
    self.best_epoch, self.best_state = None, None

  # -- the end of training ------------------------------------------------------------------
  def final_state(self, trainable, mesh):
    """The headline state: the best epoch's, or (no epoch counted) the last one."""
    if self.best_state is None:
      return trainable
    treedef = jax.tree.structure(trainable)
    return sharding.replicate(jax.tree.unflatten(treedef, self.best_state), mesh)

  def summary(self) -> dict:
    last = len(self.accuracies)
    best_acc = None if self.best_epoch is None else self.accuracies[self.best_epoch - 1]
    covered = f"1..{self.epochs - 1}" if self.best_over == "logged" else f"1..{self.epochs}"
    return {
        "select": "best_test", "headline": "best_test" if best_acc is not None else "last",
        "best_over": self.best_over, "best_epochs_considered": covered,
        "best_test_accuracy": best_acc, "best_epoch": self.best_epoch,
        "last_epoch": last, "last_test_accuracy": self.accuracies[-1] if last else None,
        "test_accuracy_per_epoch": self.accuracies,
        "note": ("model selection on the TEST split, as the reference reports (best test "
                 "accuracy over epochs; 'logged': the reference's last logged Best Acc, which "
                 "excludes the final epoch)"),
    }


def accuracy(logits, labels) -> float:
  """Top-1 accuracy of (n, C) logits against integer labels."""
  return float(np.mean(np.argmax(logits, -1) == labels))


def last_summary(test_accuracy: float, epochs: int) -> dict:
  """``select="last"``: the headline is the final state, nothing was evaluated per epoch."""
  return {"select": "last", "headline": "last", "last_epoch": epochs,
          "last_test_accuracy": test_accuracy, "best_test_accuracy": None}
