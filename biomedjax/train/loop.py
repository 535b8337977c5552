"""``train_and_evaluate(config, workdir)``: one experiment from config to ``results.json``.

build data, backbone, task, objective and method -> the method's declared stages (a closed-form
``fit`` on cached image features, then/or gradient steps with checkpoints) -> evaluate val and
test (on frozen image features, or on pixels for pixel-space methods) with the metrics of the
task's kind -> write the results. The loop knows the method only through
``biomedjax.methods.base.Method``.
"""

from __future__ import annotations

import logging
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from biomedjax import calibration, objectives, provenance, trained
from biomedjax import report as report_lib
from biomedjax.data import epoch_batches, views
from biomedjax.data.pipeline import make_train_iterator, train_options
from biomedjax.methods import METHODS
from biomedjax.methods.base import FeatureSet
from biomedjax.train import (agreement, calibrate, checkpoint, distributed, early_stopping,
                             evaluate, lifecycle, setup, sharding, step as step_lib,
                             test_selection, view_stream, watchdog, workdir_lock)

log = logging.getLogger("biomedjax")


class TrainingDiverged(FloatingPointError):
  pass


def _batch_and_steps(num_train: int, config) -> tuple[int, int, int]:
  """(global batch, steps per epoch, total steps), as Dassl: keep a short set's one batch;
  ``data.last_batch="keep"``: ceil(n / B) steps per epoch (``epoch_batches``)."""
  batch = min(config.data.batch_size, num_train)
  per_epoch = epoch_batches.steps_per_epoch(num_train, batch,
                                            config.data.get("last_batch", "drop"))
  return batch, per_epoch, per_epoch * config.optim.epochs


def _log_metrics(writer, step: int, values: dict, prefix: str) -> None:
  for k, v in values.items():
    if isinstance(v, (int, float, np.number)) or (isinstance(v, np.ndarray) and v.ndim == 0):
      writer.add_scalar(f"{prefix}/{k}", float(v), step)
  writer.flush()


def build_method(config, backbone, classnames, kind: str):
  """The configured method for ``classnames``, with the objective of ``config.loss``."""
  task = setup.make_task(classnames, config.data, kind)
  return METHODS[config.method.name](backbone, task, config.method,
                                     objectives.make(config.loss, task))


def split_frozen(method, frozen: dict) -> dict:
  """``frozen`` without the backbone parts the method trains (``trainable_backbone``)."""
  if not method.trainable_backbone:
    return frozen
  backbone = {k: v for k, v in frozen["backbone"].items() if k not in method.trainable_backbone}
  return {**frozen, "backbone": backbone}


def train(method, backbone, frozen, data, config, workdir, mesh, writer, steps, initial=None,
          selection=None):
  """Gradient training with periodic checkpoints; resumes from the workdir's latest one.

  ``steps``: (global batch, steps per epoch, total steps) from ``_batch_and_steps``.
  ``initial``: the trainable to start from (a "fit" stage's result), else ``method.init``.
  ``selection``: a ``test_selection.TestSelection`` (eval.select="best_test"): the test split is
  evaluated after every epoch and the best epoch's state is returned.
  Returns the trained pytree and the loss history.
  """
  batch, per_epoch, total = steps
  tx, schedule = method.optimizer(config.optim, per_epoch)
  rng = jax.random.key(config.seed)
  if initial is None:
    initial = method.init(jax.random.fold_in(rng, 1), frozen)
  trainable = sharding.replicate(initial, mesh)
  frozen = split_frozen(method, frozen)
  opt_state = sharding.replicate(tx.init(trainable), mesh)
  it = make_train_iterator(data.splits["train"], mesh=mesh, global_batch_size=batch,
                           seed=config.seed, **train_options(config.data))
  it = view_stream.train_iterator(config, method, frozen["backbone"], data, mesh, steps, it)
  ckpt = checkpoint.Checkpointer(workdir)
  history = lifecycle.History(workdir)
  start = 0
  restored = ckpt.restore_latest(trainable, opt_state, rng, it)  # unreadable: the one before
  if restored is not None:
    trainable, opt_state, start, rng = restored
    history.restore(start)
    if selection is not None:
      selection.restore(start // per_epoch, trainable)
    log.info("resumed from step %d of %d", start, total)
  step_fn = step_lib.make_train_step(method, backbone, tx, mesh)
  log.info("training %d steps (%d epochs x %d) at global batch %d on %d device(s)", total,
           config.optim.epochs, per_epoch, batch, mesh.shape["data"])
  policy = lifecycle.CheckpointPolicy(per_epoch, total, config.train.ckpt_every_steps,
                                      config.train.ckpt_every_minutes,
                                      config.train.ckpt_min_seconds)
  bar = tqdm(range(start, total), initial=start, total=total, desc="train",
             disable=not config.train.progress)
  t0 = time.time()
  stopper = _early_stopping(method, backbone, frozen, data, config, mesh, batch)
  agree = agreement.Agreement("train")  # one decision for all processes
  with watchdog.Guard(start if restored is not None else None) as stop:
    for i in bar:
      stop.at(i, "train step", watch=i > start)  # the first step compiles
      trainable, opt_state, m = step_fn(trainable, opt_state, frozen, next(it), rng, jnp.int32(i))
      done = i + 1
      early = False
      if stopper is not None and done % per_epoch == 0:
        stop.at(done, "early-stopping evaluation", watch=False)
        early = stopper.update(stopper.val_loss(trainable), trainable)
        log.info("epoch %d: val loss %.5f (best %.5f)%s", done // per_epoch,
                 stopper.history[-1], stopper.best_loss, ", early stop" if early else "")
      if selection is not None and done % per_epoch == 0:
        acc = selection.update(done // per_epoch, trainable)
        _log_metrics(writer, done, {"accuracy_per_epoch": acc}, "test")
      stop.at(done, "control-flag agreement", watch=i > start)  # the others may still compile
      agreed = agree.decide(done, any_of={"stop": bool(stop)},
                            from_zero={"early": early, "save": policy.due(done, bool(stop))})
      early = agreed["early"]
      if done % config.train.log_every_steps == 0 or done == total or early:
        stop.at(done, "the step's metrics")
        m = jax.device_get(m)
        m["lr"] = float(schedule(i))
        if not all(np.isfinite(v) for v in m.values()):
          raise TrainingDiverged(f"non-finite metrics at step {done}: {m}; the last checkpoint "
                                 f"in {ckpt.directory} is intact")
        _log_metrics(writer, done, m, "train")
        history.append(done, float(m["loss"]))
        bar.set_postfix(loss=f"{m['loss']:.4f}")
        log.info("step %d/%d epoch %d: %s (%.1f steps/s)", done, total, i // per_epoch + 1,
                 ", ".join(f"{k}={v:.4g}" for k, v in m.items()),
                 (done - start) / (time.time() - t0))
      if early:
        break
      if agreed["save"] or agreed["stop"]:
        stop.at(done, "checkpoint save")
        history.save()  # first: a run killed between the two then resumes with all its history
        ckpt.save(done, trainable, opt_state, rng, it)
        if selection is not None:
          selection.save()
        stop.saved(done)
      if agreed["stop"] and done < total:
        bar.close()
        ckpt.close()
        getattr(it, "close", lambda: None)()  # stops grain's prefetch threads/worker processes
        raise lifecycle.Interrupted(
            f"{stop.name or 'a signal to another process'}: stopped at step {done} of {total} "
            f"with a checkpoint in {ckpt.directory}; run the same command again to resume")
  ckpt.close()
  if stopper is not None and stopper.best is not None:
    trainable = sharding.replicate(stopper.best, mesh)  # the best epoch, as the reference reloads
  if selection is not None:
    trainable = selection.final_state(trainable, mesh)  # the best test epoch (eval.select)
  return trainable, history.entries


def _early_stopping(method, backbone, frozen, data, config, mesh, batch):
  """An EarlyStopping with a ``val_loss(trainable)`` for this run, or None when it is off."""
  patience = config.train.get("early_stopping_patience", 0)
  if not patience:
    return None
  val = data.splits.get("val")
  if val is None:
    raise ValueError("config.train.early_stopping_patience needs a validation split")
  stopper = early_stopping.EarlyStopping(patience, config.train.early_stopping_min_delta)
  logits_fn = step_lib.make_logits_fn(method, backbone)
  loss_fn = jax.jit(lambda z, y: method.objective(z, y))
  cache = {}

  def val_loss(trainable):
    if method.inputs == "features":
      if "features" not in cache:
        feature_fn = step_lib.make_feature_fn(backbone)
        cache["features"] = evaluate.map_images(lambda px: feature_fn(frozen["backbone"], px),
                                                val, mesh, config.data, "val features", False)
      feats, labels = cache["features"]
      logits = np.asarray(logits_fn(trainable, frozen, jnp.asarray(feats)))
    else:
      logits, labels = evaluate.map_images(lambda px: logits_fn(trainable, frozen, px), val,
                                           mesh, config.data, "val", False)
    return early_stopping.batch_mean_loss(loss_fn, logits, labels, batch)

  stopper.val_loss = val_loss
  return stopper


def _eval_targets(config, data, backbone, params, method, frozen, mesh):
  """(result key, feature-cache key, method, its frozen pytree, source, classnames) per split.

  Base-to-novel evaluates the novel classes with a second method object built for their names;
  the base method's ``transfer`` hook decides whether (and how) its trained state applies.
  """
  test_key = "test" if config.data.setting == "few_shot" else "base"
  targets = [("val", "val", method, frozen, data.splits.get("val"), data.classnames),
             (test_key, "test", method, frozen, data.splits["test"], data.classnames)]
  if config.data.setting == "base2novel":
    novel = build_method(config, backbone, data.novel_classnames, data.kind)
    novel_frozen = sharding.replicate({"backbone": params, **novel.prepare(params)}, mesh)
    targets.append(("novel", "novel_test", novel, novel_frozen, data.novel_test,
                    data.novel_classnames))
  return [t for t in targets if t[4] is not None]


def fit_views(method, backbone, params, data, config) -> FeatureSet:
  """``method.fit_views`` augmented passes over the training set (the harness transform),
  encoded once: FeatureSet((V, n, d) unnormalised features, labels)."""
  encode = jax.jit(backbone.image_features)
  log.info("encoding %d augmented view(s) of %d training images", method.fit_views,
           len(data.splits["train"]))
  feats, labels = views.encode_views(data.splits["train"], lambda x: encode(params, x),
                                     method.fit_views, config.seed, config.data.test_batch_size,
                                     config.data.image_size)
  return FeatureSet(feats, labels)


def short_classes(data, shots: int) -> dict:
  """Classes with fewer training images than K (used whole, as the reference does), by name."""
  if shots <= 0 or data.kind != "multiclass":
    return {}
  source = data.splits["train"]
  if hasattr(source, "examples"):  # image files: labels without reading the images
    labels = np.asarray([ex.label for ex in source.examples])
  else:
    labels = np.asarray([source[i]["label"] for i in range(len(source))])
  counts = np.bincount(labels, minlength=len(data.classnames))
  short = {data.classnames[c]: int(n) for c, n in enumerate(counts) if n < shots}
  if short:
    log.warning("classes with fewer than K=%d training images, used whole: %s", shots, short)
  return short


@workdir_lock.locked  # one run per workdir
def train_and_evaluate(config, workdir) -> dict:
  from tensorboardX import SummaryWriter
  workdir = pathlib.Path(workdir)
  calibrate.check(config)  # before anything is written
  if checkpoint.check_config(workdir, config):  # reads only; a different run is refused
    finished = lifecycle.finished_results(workdir)
    if finished is not None:
      return finished
  with distributed.process_zero_first("setup"):  # it writes into the shared workdir
    data = setup.build_data(config.data, config.seed, workdir)
    backbone, params = setup.build_backbone(config.model, workdir,
                                           setup.vocabulary_words(config, data))
  method = build_method(config, backbone, data.classnames, data.kind)
  view_stream.check(config, method)  # data.views: refused before anything is written
  n_train = len(data.splits["train"])
  steps = _batch_and_steps(n_train, config)
  last_batch = config.data.get("last_batch", "drop")
  epoch_batches.check_last_batch(last_batch, config.data.get("epoch_drop_last", False))
  epoch_batches.check_devices(n_train, steps[0], last_batch, jax.device_count(),
                              jax.process_count())
  mesh = sharding.make_mesh(epoch_batches.mesh_batch(n_train, steps[0], last_batch))
  frozen = sharding.replicate({"backbone": params, **method.prepare(params)}, mesh)
  targets = _eval_targets(config, data, backbone, params, method, frozen, mesh)
  if config.data.setting == "base2novel":  # refuse before training, not after
    method.transfer(jax.eval_shape(method.init, jax.random.key(0), frozen), targets[-1][2])
  test_selection.check(config, data.kind, method.trains)
  # Data and model are good: only now does the workdir get its config (the resume lock).
  if jax.process_index() == 0:
    checkpoint.write_config(workdir, config)
  writer = (SummaryWriter(str(workdir / "tensorboard"), purge_step=lifecycle.latest_step(workdir))
            if jax.process_index() == 0 else _NoWriter())

  image_features = feature_cache(backbone, frozen["backbone"], mesh, config)
  params_r = frozen["backbone"]
  history, trainable, t_train = [], None, time.time()
  if method.fits and not method.fit_needs_data:
    trainable = method.fit(frozen, None, None)  # zero-shot: encoding the train split is waste
  elif method.fits:
    val = data.splits.get("val")
    val = image_features("val", val) if val is not None else None
    if method.fit_views:  # fits on augmented views (biomedjax/data/views.py)
      trainable = method.fit(frozen, fit_views(method, backbone, params_r, data, config),
                             val, rng=jax.random.fold_in(jax.random.key(config.seed), 2))
    else:
      trainable = method.fit(frozen, image_features("train", data.splits["train"]), val)
    trainable = distributed.from_process_zero(trainable)  # the same replicas everywhere
  selection = None
  if method.trains and config.eval.get("select", "last") == "best_test":
    selection = test_selection.TestSelection(
        workdir, test_selection.accuracy_fn(method, backbone, split_frozen(method, frozen),
                                            data.splits["test"], mesh, config.data),
        config.optim.epochs, config.eval.get("best_over", "logged"))
  if method.trains:
    trainable, history = train(method, backbone, frozen, data, config, workdir, mesh, writer,
                               steps, initial=trainable, selection=selection)
  train_minutes = (time.time() - t_train) / 60
  trainable = sharding.replicate(trainable, mesh)
  frozen = split_frozen(method, frozen)
  return finish_run(config, workdir, data, backbone, method, frozen, mesh, targets, trainable,
                    history, train_minutes, image_features, writer, selection=selection)


def feature_cache(backbone, params, mesh, config):
  """``image_features(split, source) -> FeatureSet``: a split's eval-transform features, encoded
  on its first use and kept (val, test, a fit stage and a pack's points all reuse them)."""
  feature_fn = step_lib.make_feature_fn(backbone)
  features = {}

  def image_features(split, examples) -> FeatureSet:
    if split not in features:
      features[split] = FeatureSet(*evaluate.map_images(
          lambda px: feature_fn(params, px), examples, mesh, config.data, f"features {split}",
          config.train.progress))
    return features[split]
  return image_features


def finish_run(config, workdir, data, backbone, method, frozen, mesh, targets, trainable,
               history, train_minutes, image_features, writer, logits_override=None,
               extra_results=None, selection=None) -> dict:
  """Trained state -> trained_state file, evaluation of every target, results.json.

  ``logits_override(cache_key, source)``: the (logits, labels) of ``method``'s own targets when
  the caller has them already (a packed sweep evaluates all its points in one program).
  ``extra_results``: keys added to results.json (a packed run says which pack it was in).
  ``selection``: the run's ``test_selection.TestSelection`` (eval.select="best_test"), else the
  last epoch is the selection reported.
  """
  if jax.process_index() == 0:  # what predict/export use; before results.json marks the end
    trained.save(workdir / trained.STATE_FILE, trainable, trained.run_meta(
        config, method.task, setup.vocabulary_words(config, data)))
  results = {"method": config.method.name, "dataset": config.data.dataset,
             "shots": config.data.shots, "seed": config.seed, "setting": config.data.setting,
             "task_kind": data.kind, "train_loss": history,
             "skipped_images": data.skipped_images,
             "harness": config.data.get("augment", "") == "harness",
             "provenance": provenance.collect(config, data.split_file),
             "trained_state": trained.summary(trainable),
             "trainable_parameters": method.parameter_counts(trainable)}
  short = short_classes(data, config.data.shots)
  if short:
    results["classes_below_shots"] = short

  if config.get("variant", ""):  # a grid point: its row in the sweep's report
    results["variant"] = config.variant
  results.update(extra_results or {})

  def split_logits(name, cache_key, m, fz, source):
    if logits_override is not None and m is method:
      return logits_override(cache_key, source)
    state = trainable if m is method else method.transfer(trainable, m)
    fz = split_frozen(m, fz)
    logits_fn = step_lib.make_logits_fn(m, backbone)
    if m.inputs == "features":
      feats, labels = image_features(cache_key, source)
      return np.asarray(logits_fn(state, fz, jnp.asarray(feats))), labels
    return evaluate.map_images(lambda px: logits_fn(state, fz, px), source, mesh, config.data,
                               f"eval {name}", config.train.progress)

  multiclass = data.kind == "multiclass"
  temperature = None
  if multiclass and config.eval.temperature == "fit":  # on val, else on the few-shot train set
    fit_on = "val" if data.splits.get("val") is not None else "train"
    temperature = calibration.fit_temperature(*split_logits(
        fit_on, fit_on, method, frozen, data.splits[fit_on]))
    results["temperature"] = {"value": temperature, "fitted_on": fit_on if fit_on == "val"
                              else "train (few-shot set, eval transform; no val split)"}
    log.info("temperature scaling: T = %.4f fitted by NLL on %s", temperature, fit_on)
  for name, cache_key, m, fz, source, classnames in targets:
    logits, labels = split_logits(name, cache_key, m, fz, source)
    results[name] = evaluate.report(logits, labels, classnames, data.kind)
    if jax.process_index() == 0:
      evaluate.save_predictions(workdir, name, logits, labels, classnames)
    _log_metrics(writer, 0, results[name], name)
    log.info("%s: %s", name, evaluate.summary(results[name], data.kind))
    if multiclass and temperature is not None:
      results[name]["temperature_scaled"] = calibrate.scaled_report(logits, labels, classnames,
                                                                    temperature)
    if multiclass and jax.process_index() == 0:
      calibrate.diagrams(config.eval, workdir, name, logits, labels, classnames)
      if temperature is not None:
        calibrate.diagrams(config.eval, workdir, name, logits, labels, classnames, temperature)
  if method.trains and data.kind == "multiclass" and "test" in results:
    results["selection"] = (selection.summary() if selection is not None else
                            test_selection.last_summary(results["test"]["accuracy"],
                                                        config.optim.epochs))
  writer.close()
  if data.kind == "multilabel" and config.data.setting == "few_shot":
    from biomedjax import multilabel_study  # the study tables' inputs (scores, embeddings)
    multilabel_study.write_run_setting(workdir, method, trainable, frozen, data, config, mesh,
                                       image_features, train_minutes)
  if jax.process_index() == 0:
    report_lib.write_run_results(workdir, results)
  return results


class _NoWriter:
  """Processes other than 0 log nothing (the metrics are global)."""
  def add_scalar(self, *a, **k): pass
  def flush(self): pass
  def close(self): pass
