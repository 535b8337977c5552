"""Per-lane epoch hooks of the training loop: early stopping and best-test selection.

A hook sees the trainable at the end of every epoch (``epoch_end`` -> stop training?), saves and
restores its bookkeeping beside the checkpoints, and picks the state the run reports (``final``).
Both read their split through ``Run.logits``, the run's one evaluation path.
"""

from __future__ import annotations

import logging

import jax

from biomedjax.train import control, early_stopping, sharding, test_selection

log = logging.getLogger("biomedjax")


class EarlyStop:
  """``config.train.early_stopping_patience``: the val loss after each epoch; the best epoch's
  state is the one reported, as the reference reloads it. Bookkeeping lives in this process."""

  def __init__(self, run):
    self.run = run
    self.stopper = early_stopping.EarlyStopping(run.config.train.early_stopping_patience,
                                                run.config.train.early_stopping_min_delta)
    self.loss_fn = jax.jit(lambda z, y: run.method.objective(z, y))

  def epoch_end(self, done: int, epoch: int, trainable) -> bool:
    logits, labels = self.run.logits(trainable, "val", progress=False)
    loss = early_stopping.batch_mean_loss(self.loss_fn, logits, labels, self.run.steps[0])
    stop = control.decide(self.stopper.update(loss, trainable))
    log.info("epoch %d: val loss %.5f (best %.5f)%s", epoch, self.stopper.history[-1],
             self.stopper.best_loss, ", early stop" if stop else "")
    return stop

  def save(self): pass
  def restore(self, epochs: int, trainable): pass

  def final(self, trainable):
    if self.stopper.best is None:
      return trainable
    return sharding.replicate(self.stopper.best, self.run.mesh)


class BestTest:
  """``eval.select="best_test"``: the full test split after every epoch (test_selection)."""

  def __init__(self, run):
    self.run = run
    self.selection = test_selection.TestSelection(
        run.workdir, lambda t: test_selection.accuracy(*run.logits(t, "test", progress=False)),
        run.config.optim.epochs, run.config.eval.get("best_over", "logged"))

  def epoch_end(self, done: int, epoch: int, trainable) -> bool:
    acc = self.selection.update(epoch, trainable)
    self.run.writer.add_scalar("test/accuracy_per_epoch", float(acc), done)
    self.run.writer.flush()
    return False

  def save(self):
    self.selection.save()

  def restore(self, epochs: int, trainable):
    self.selection.restore(epochs, trainable)

  def final(self, trainable):
    return self.selection.final_state(trainable, self.run.mesh)


def for_run(run) -> list:
  """The hooks ``run``'s config asks for (``test_selection.check`` refuses both at once)."""
  if not run.method.trains:
    return []
  hooks = []
  if run.config.train.get("early_stopping_patience", 0):
    if run.data.splits.get("val") is None:
      raise ValueError("config.train.early_stopping_patience needs a validation split")
    hooks.append(EarlyStop(run))
  if run.config.eval.get("select", "last") == "best_test":
    hooks.append(BestTest(run))
  return hooks
