"""``train_and_evaluate(config, workdir)``: one experiment from config to ``results.json``; and
``train``: the one training loop, over a stepper with P lanes (a single run is one lane).

build and check everything (``run.prepare``) -> the method's declared stages (a closed-form
``fit`` on cached image features, then/or gradient steps with checkpoints) -> evaluate val and
test (``Run.logits``) with the metrics of the task's kind -> write the results. The loop knows
the method only through ``biomedjax.methods.base.Method``.

The loop owns the iterator, checkpoints (what to save, when, restoring), the per-lane loss
history and TensorBoard scalars, progress, interruption by a signal and the non-finite check;
early stopping and best-test selection are epoch hooks (``biomedjax.train.hooks``). Every
decision it takes goes through ``biomedjax.train.control.decide``.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from biomedjax.data.pipeline import make_train_iterator, train_options
from biomedjax.train import (checkpoint, control, cost as cost_lib, hooks as hooks_lib,
                             lifecycle, phases, sharding, step as step_lib, view_stream, watchdog,
                             workdir_lock)
from biomedjax.train.run import (NoWriter, Run, batch_and_steps, build_method,  # noqa: F401
                                 feature_cache, finished, log_metrics, prepare, short_classes,
                                 split_frozen, unfinished)

log = logging.getLogger("biomedjax")


class TrainingDiverged(FloatingPointError):
  pass


class SingleStepper:
  """One lane: the method's optimizer and the engine's train step (``step.make_train_step``)."""
  size = 1

  def __init__(self, run: Run, initial=None):
    self.run, self.initial = run, initial
    self.tx, self.schedule = run.method.optimizer(run.config.optim, run.steps[1])

  def init(self, rng, frozen):
    trainable = self.initial
    if trainable is None:
      trainable = self.run.method.init(rng, frozen)
    return trainable, self.tx.init(trainable)

  def make_step(self, mesh):
    return step_lib.make_train_step(self.run.method, self.run.backbone, self.tx, mesh)

  def lane_metrics(self, m: dict) -> list[dict]:
    return [m]

  def lr(self, lane: int, i: int) -> float:
    return float(self.schedule(i))

  def traced(self, fn):
    return fn()


@dataclasses.dataclass
class Lane:
  """Where one lane's history and scalars go: its run's workdir and writer."""
  workdir: pathlib.Path
  writer: object


def train(run: Run, stepper=None, lanes=None, directory=None, hooks=(), cost=None):
  """Gradient training with periodic checkpoints in ``directory`` (default the run's workdir);
  resumes from its latest one. -> (trainable, per-lane loss histories, diverged).

  ``stepper``: ``SingleStepper(run)`` by default, a pack's program for P lanes; ``lanes``: one
  ``Lane`` per lane; ``hooks``: epoch hooks (``biomedjax.train.hooks``), each picking the state
  returned; ``cost``: a ``cost.CostTracker`` timing each epoch (results.json's "cost").
  ``diverged``: lane -> the step its metrics became non-finite; the lane keeps running
  (lanes are independent) until every lane has diverged, which raises ``TrainingDiverged``.
  """
  config, mesh = run.config, run.mesh
  stepper = stepper or SingleStepper(run)
  lanes = lanes or [Lane(run.workdir, run.writer)]
  batch, per_epoch, total = run.steps
  rng = jax.random.key(config.seed)
  trainable, opt_state = stepper.traced(lambda: stepper.init(jax.random.fold_in(rng, 1),
                                                             run.frozen))
  trainable, opt_state = sharding.replicate((trainable, opt_state), mesh)
  frozen = run.step_frozen
  it = make_train_iterator(run.data.splits["train"], mesh=mesh, global_batch_size=batch,
                           seed=config.seed, **train_options(config.data))
  # data.views="precomputed": the stream is encoded (or read from the cache) once for all lanes
  it = view_stream.train_iterator(config, run.method, frozen["backbone"], run.data, mesh,
                                  run.steps, it, drifting=bool(run.backbone_state))
  ckpt = checkpoint.Checkpointer(pathlib.Path(directory or run.workdir))
  histories = [lifecycle.History(lane.workdir) for lane in lanes]
  start = 0
  # the frozen tower's running statistics where the reference trains through it in train mode
  tower = run.backbone_state  # replicated on run.mesh by prepare
  restored = ckpt.restore_latest(trainable, opt_state, rng, it, tower)  # unreadable: one before
  if restored is not None:
    trainable, opt_state, start, rng, tower = restored
    run.backbone_state = tower
    for h in histories:
      h.restore(start)
    for hook in hooks:
      hook.restore(start // per_epoch, trainable)
    log.info("resumed from step %d of %d in %s", start, total, ckpt.directory)
  step_fn = stepper.make_step(mesh)
  phases.phase("compiling the train step (the first step; it can take a minute) ...")
  lanes_text = "" if stepper.size == 1 else f" x {stepper.size} lanes"
  log.info("training %d steps (%d epochs x %d) at global batch %d on %d device(s)%s", total,
           config.optim.epochs, per_epoch, batch, mesh.shape["data"], lanes_text)
  policy = lifecycle.CheckpointPolicy(per_epoch, total, config.train.ckpt_every_steps,
                                      config.train.ckpt_every_minutes,
                                      config.train.ckpt_min_seconds)
  bar = tqdm(range(start, total), initial=start, total=total, desc=f"train x{stepper.size}",
             disable=not config.train.progress, smoothing=0)
  diverged: dict[int, int] = {}
  t0, first, rate_from = time.time(), start, start
  if cost is not None:
    cost.begin()  # the first epoch's time then includes compiling the step
  decisions = control.Decisions("train")  # one decision for all processes
  with watchdog.Guard(start if restored is not None else None) as stop:
    for i in bar:
      stop.at(i, "train step", watch=i > start)  # the first step compiles
      batch_i = next(it)
      trainable, opt_state, tower, m = stepper.traced(lambda: step_fn(
          trainable, opt_state, tower, frozen, batch_i, rng, jnp.int32(i)))
      run.backbone_state = tower  # what the epoch hooks and the final evaluation see
      done = i + 1
      if i == first:  # compilation: out of the bar's and the log's steps/s
        jax.block_until_ready(m)
        phases.restart_clock(bar, done, t0)
        t0, rate_from = time.time(), done
      if cost is not None:  # training cost (train/cost.py): times each epoch's steps
        cost.after_step(done, m)
      epoch_end = done % per_epoch == 0
      if epoch_end and hooks:
        stop.at(done, "epoch-end evaluation", watch=False)
      early = epoch_end and any([h.epoch_end(done, done // per_epoch, trainable) for h in hooks])
      stop.at(done, "control-flag agreement", watch=i > start)  # the others may still compile
      agreed = decisions.step(done, stop=bool(stop), early=early,
                              save=policy.due(done, bool(stop)))
      early = agreed["early"]
      if done % config.train.log_every_steps == 0 or done == total or early:
        stop.at(done, "the step's metrics")
        _log_step(stepper, lanes, histories, diverged, jax.device_get(m), i, done, run, bar, t0,
                  rate_from, ckpt)
      if early:
        break
      if agreed["save"] or agreed["stop"]:
        stop.at(done, "checkpoint save")
        for h in histories:  # first: a run killed between the two resumes with all its history
          h.save()
        for hook in hooks:
          hook.save()
        ckpt.save(done, trainable, opt_state, rng, it, tower)
        stop.saved(done)
      if cost is not None:
        cost.after_epoch_work(done)
      if agreed["stop"] and done < total:
        bar.close()
        ckpt.close()
        getattr(it, "close", lambda: None)()  # stops grain's prefetch threads/worker processes
        raise lifecycle.Interrupted(
            f"{stop.name or 'a signal to another process'}: stopped at step {done} of {total} "
            f"with a checkpoint in {ckpt.directory}; run the same command again to resume")
  ckpt.close()
  for hook in hooks:
    trainable = hook.final(trainable)  # the best epoch (early stopping, eval.select)
  return trainable, [h.entries for h in histories], diverged


def _log_step(stepper, lanes, histories, diverged, m, i, done, run, bar, t0, rate_from, ckpt):
  """Every lane's metrics at a logged step: TensorBoard, history, the non-finite check."""
  total, per_epoch = run.steps[2], run.steps[1]
  for p, mp in enumerate(stepper.lane_metrics(m)):
    mp["lr"] = stepper.lr(p, i)
    if control.decide(not all(np.isfinite(v) for v in mp.values())):
      if p not in diverged:
        log.error("%s: non-finite metrics at step %d: %s", lanes[p].workdir, done, mp)
      diverged.setdefault(p, done)
      continue
    log_metrics(lanes[p].writer, done, mp, "train")
    histories[p].append(done, float(mp["loss"]))
  if len(diverged) == stepper.size:
    raise TrainingDiverged(f"non-finite metrics at step {done}: {m}; the last checkpoint in "
                           f"{ckpt.directory} is intact")
  loss = np.atleast_1d(m["loss"])
  bar.set_postfix(loss=" ".join(f"{v:.4f}" for v in loss))
  log.info("step %d/%d epoch %d: loss per lane %s (%.3g steps/s)", done, total,
           i // per_epoch + 1, np.round(loss, 5).tolist(),
           (done - rate_from) / max(time.time() - t0, 1e-9))


@workdir_lock.locked  # one run per workdir
def train_and_evaluate(config, workdir) -> dict:
  """One experiment: -> its results (a finished run's, unchanged, when there is one)."""
  results = finished(config, workdir)  # reads only; a different run is refused
  if results is not None:
    return results
  run = prepare(config, workdir)
  hooks = hooks_lib.for_run(run)
  run.lock()  # data and model are good: only now does the workdir get its config
  t0 = time.time()
  trainable = run.fit() if run.method.fits else None
  history = []
  batch, per_epoch, _ = run.steps
  tracker = cost_lib.CostTracker(per_epoch, min(len(run.data.splits["train"]), batch * per_epoch))
  if run.method.trains:
    trainable, (history,), _ = train(run, SingleStepper(run, trainable), hooks=hooks,
                                     cost=tracker)
  selection = next((h.selection for h in hooks if isinstance(h, hooks_lib.BestTest)), None)
  return run.finish(trainable, history, (time.time() - t0) / 60, selection=selection,
                    extra_results={"cost": tracker.summary(run.method.parameter_counts(trainable))})
