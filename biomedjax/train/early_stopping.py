"""Early stopping on the validation loss, checked at the end of every epoch, best epoch kept.

As the IU-Xray study's loops (``train_eval_biomedclip`` in ``evaluatingBiomedClIP_IUXRAY.ipynb``,
Nafiz95/BioVLM_Eval_CXR): after each epoch the validation loss is the mean over batches of
``batch_size`` of each batch's mean loss (so a smaller last batch weighs as much as a full one);
a loss below ``best - min_delta`` keeps the weights and resets the patience, anything else
counts one bad epoch, and ``patience`` bad epochs in a row stop training. The best weights are
what the run evaluates. Off when ``config.train.early_stopping_patience`` is 0 (the default).

The bookkeeping lives in this process only: a run resumed from a checkpoint starts it afresh.
"""

from __future__ import annotations

import math

import jax
import numpy as np


def batch_mean_loss(objective, logits: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
  """Mean over consecutive batches of ``batch_size`` of ``objective``'s batch loss."""
  losses = [float(objective(logits[i:i + batch_size], labels[i:i + batch_size])[0])
            for i in range(0, len(logits), batch_size)]
  return float(np.mean(losses))


class EarlyStopping:
  """``update(val_loss, trainable)`` after each epoch -> True when training should stop."""

  def __init__(self, patience: int, min_delta: float = 1e-4):
    if patience < 1:
      raise ValueError(f"early stopping patience must be >= 1, got {patience}")
    self.patience, self.min_delta = patience, min_delta
    self.best_loss, self.best, self.bad_epochs = math.inf, None, 0
    self.history: list[float] = []

  def update(self, val_loss: float, trainable) -> bool:
    self.history.append(val_loss)
    if val_loss < self.best_loss - self.min_delta:
      self.best_loss, self.bad_epochs = val_loss, 0
      self.best = jax.device_get(trainable)  # a host copy: the step donates its inputs
      return False
    self.bad_epochs += 1
    return self.bad_epochs >= self.patience
