"""``prepare(config, workdir) -> Run``: everything one experiment needs, built and checked once.

A single run, each point of a packed sweep and each seed of a fitted setting are short callers
of this module: ``prepare`` builds the data, backbone, method, mesh, schedule, frozen pytree and
evaluation targets and refuses bad settings before anything is written; ``Run.lock`` writes the
workdir's config (the resume lock) and opens its writer; ``Run.logits`` is the ONE place an
evaluation chooses between cached image features and pixels; ``Run.finish`` writes the trained
state, evaluates every target and writes ``results.json``.

``backbone_state``: the frozen tower's mutable state, ``{"batch_stats": ...}`` when the method's
reference trains through a BatchNorm tower in train mode (``biomedjax/train/tower.py``; ``{}``
otherwise): threaded through the train step, checkpointed with the trainable state, used by every
evaluation (the feature cache keys on it) and written into the trained-state file.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from biomedjax import objectives, run_facts
from biomedjax.evaluation import calibration
from biomedjax.tools import provenance, trained
from biomedjax.evaluation import report as report_lib
from biomedjax.data import epoch_batches, views
from biomedjax.methods import METHODS
from biomedjax.methods.base import FeatureSet, Method
from biomedjax.train import (calibrate, checkpoint, distributed, evaluate, lifecycle, phases,
                             setup, sharding, step as step_lib, test_selection, tower as tower_lib,
                             view_stream)

log = logging.getLogger("biomedjax")


def build_method(config, backbone, classnames, kind: str) -> Method:
  """The configured method for ``classnames``, with the objective of ``config.loss``."""
  task = setup.make_task(classnames, config.data, kind)
  return METHODS[config.method.name].build(backbone, task, config.method,
                                     objectives.make(config.loss, task))


def split_frozen(method, frozen: dict) -> dict:
  """``frozen`` without the backbone parts the method trains (``trainable_backbone``)."""
  if not method.trainable_backbone:
    return frozen
  backbone = {k: v for k, v in frozen["backbone"].items() if k not in method.trainable_backbone}
  return {**frozen, "backbone": backbone}


def batch_and_steps(num_train: int, config) -> tuple[int, int, int]:
  """(global batch, steps per epoch, total steps), as Dassl: keep a short set's one batch;
  ``data.last_batch="keep"``: ceil(n / B) steps per epoch (``epoch_batches``)."""
  batch = min(config.data.batch_size, num_train)
  per_epoch = epoch_batches.steps_per_epoch(num_train, batch,
                                            config.data.get("last_batch", "drop"))
  return batch, per_epoch, per_epoch * config.optim.epochs


def finished(config, workdir) -> dict | None:
  """The one skip-finished rule: the results of the finished run in ``workdir`` (its
  results.json), or None. Reads only; a workdir holding a run of another config is refused
  (``CheckpointError``), and so is a bad calibration setting, before anything is written."""
  calibrate.check(config)
  checkpoint.check_config(pathlib.Path(workdir), config)
  return lifecycle.finished_results(pathlib.Path(workdir))


def unfinished(points) -> list:
  """The points (anything with ``config`` and ``workdir``) that ``finished`` does not skip."""
  todo = []
  for p in points:
    if finished(p.config, p.workdir) is not None:
      log.info("done, skipping: %s", p.workdir)
    else:
      todo.append(p)
  return todo


def log_metrics(writer, step: int, values: dict, prefix: str) -> None:
  for k, v in values.items():
    if isinstance(v, (int, float, np.number)) or (isinstance(v, np.ndarray) and v.ndim == 0):
      writer.add_scalar(f"{prefix}/{k}", float(v), step)
  writer.flush()


class NoWriter:
  """Processes other than 0 log nothing (the metrics are global)."""
  def add_scalar(self, *a, **k): pass
  def flush(self): pass
  def close(self): pass


@dataclasses.dataclass(frozen=True)
class Target:
  """One evaluated split: its feature-cache key, the method and frozen pytree (backbone parts
  the method trains removed) it is evaluated with, its source and class names."""
  cache_key: str
  method: Method
  frozen: dict
  source: Any
  classnames: tuple


@dataclasses.dataclass
class Run:
  """What every path of an experiment shares (see the module doc)."""
  config: Any
  workdir: pathlib.Path
  data: Any
  backbone: Any
  params: Any
  method: Method
  mesh: Any
  steps: tuple[int, int, int]          # (global batch, steps per epoch, total steps)
  frozen: dict                         # {"backbone": params, **method.prepare(params)}, replicated
  targets: dict[str, Target]           # result key -> Target, val/test(or base)/novel
  image_features: Callable             # (cache key, source) -> FeatureSet, encoded once
  backbone_state: dict = dataclasses.field(default_factory=dict)
  writer: Any = dataclasses.field(default_factory=NoWriter)
  # (cache key, features) -> logits of this run's method from another program (a pack's lane)
  lane_logits: Callable | None = None
  _logits_fns: dict = dataclasses.field(default_factory=dict)

  @property
  def step_frozen(self) -> dict:
    """The frozen pytree the step and the evaluations see."""
    return split_frozen(self.method, self.frozen)

  # -- the workdir ------------------------------------------------------------------------------
  def lock(self, purge_dir=None) -> "Run":
    """Writes config.json (the resume lock; process 0) and opens the TensorBoard writer (process
    0; ``purge_dir``: whose latest checkpoint step the stream is cut at, default the workdir)."""
    from tensorboardX import SummaryWriter
    if jax.process_index() == 0:
      checkpoint.write_config(self.workdir, self.config)
      self.writer = SummaryWriter(str(self.workdir / "tensorboard"),
                                  purge_step=lifecycle.latest_step(purge_dir or self.workdir))
    return self

  # -- evaluation -------------------------------------------------------------------------------
  def target(self, split: str) -> Target:
    if split in self.targets:
      return self.targets[split]
    return Target(split, self.method, self.step_frozen, self.data.splits[split],
                  self.data.classnames)

  def _logits_fn(self, method):
    if id(method) not in self._logits_fns:
      self._logits_fns[id(method)] = (method, step_lib.make_logits_fn(method, self.backbone))
    return self._logits_fns[id(method)][1]

  def logits(self, state, split: str, progress: bool | None = None):
    """(logits, labels) of ``split`` under ``state`` (this run's trainable): cached frozen-tower
    features for a features method, the images batch by batch for a pixels method. The novel
    classes' target gets ``state`` through the method's ``transfer`` hook."""
    t = self.target(split)
    if t.method is not self.method:
      state = self.method.transfer(state, t.method)
    if t.method.inputs == "features":  # the tower's features under the run's tower state
      feats, labels = self.image_features(t.cache_key, t.source, self.backbone_state)
      if self.lane_logits is not None and t.method is self.method:
        return self.lane_logits(t.cache_key, feats), labels
      return np.asarray(self._logits_fn(t.method)(state, t.frozen, jnp.asarray(feats))), labels
    fn = self._logits_fn(t.method)
    frozen = tower_lib.with_tower(t.frozen, self.backbone_state)
    progress = self.config.train.progress if progress is None else progress
    return evaluate.map_images(lambda px: fn(state, frozen, px), t.source, self.mesh,
                               self.config.data, f"eval {split}", progress)

  def embeddings(self, state, split: str):
    """(image embeddings, labels) of ``split``: the frozen tower's cached features for a
    features method; for a method that tunes the tower (pixels), its tower under ``state``
    (``Method.features``). With ``logits`` the only places that choose features vs pixels."""
    if self.method.inputs == "features":
      return self.image_features(split, self.data.splits[split], self.backbone_state)
    tower = jax.jit(lambda t, px: self.method.features(t["visual"], self.step_frozen,
                                                       px.astype(jnp.float32) / 255.0))
    return evaluate.map_images(lambda px: tower(state, px), self.data.splits[split], self.mesh,
                               self.config.data, f"{split} embeddings", False)

  # -- a "fit" stage ------------------------------------------------------------------------------
  def fit_views(self) -> FeatureSet:
    """``method.fit_views`` augmented passes over the training set (the harness transform),
    encoded once: FeatureSet((V, n, d) unnormalised features, labels), seeded by the run seed."""
    encode = jax.jit(self.backbone.image_features)
    params = self.frozen["backbone"]
    log.info("encoding %d augmented view(s) of %d training images", self.method.fit_views,
             len(self.data.splits["train"]))
    feats, labels = views.encode_views(self.data.splits["train"], lambda x: encode(params, x),
                                       self.method.fit_views, self.config.seed,
                                       self.config.data.test_batch_size,
                                       self.config.data.image_size)
    return FeatureSet(feats, labels)

  def fit_val(self) -> FeatureSet | None:
    """The val features a fit stage reads (None without a val split)."""
    val = self.data.splits.get("val")
    return self.image_features("val", val) if val is not None else None

  def fit_train(self) -> FeatureSet:
    """The training features a fit stage reads: augmented views or the eval transform's."""
    if self.method.fit_views:
      return self.fit_views()
    return self.image_features("train", self.data.splits["train"])

  def fit(self):
    """The "fit" stage's trainable (the same replicas on every process)."""
    method = self.method
    if not method.fit_needs_data:
      return method.fit(self.frozen, None, None)  # zero-shot: encoding the train split is waste
    train, val = self.fit_train(), self.fit_val()
    if method.fit_views:  # fits on augmented views (biomedjax/data/views.py)
      trainable = method.fit(self.frozen, train, val,
                             rng=jax.random.fold_in(jax.random.key(self.config.seed), 2))
    else:
      trainable = method.fit(self.frozen, train, val)
    return distributed.from_process_zero(trainable)

  # -- the end ------------------------------------------------------------------------------------
  def finish(self, trainable, history, train_minutes: float, extra_results=None,
             selection=None) -> dict:
    """Trained state -> trained_state file, evaluation of every target, results.json.

    ``extra_results``: keys added to results.json (a packed run says which pack it was in).
    ``selection``: the run's ``test_selection.TestSelection`` (eval.select="best_test"), else the
    last epoch is the selection reported."""
    config, data, method = self.config, self.data, self.method
    trainable = sharding.replicate(trainable, self.mesh)
    if jax.process_index() == 0:  # what predict/export use; before results.json marks the end
      trained.save(self.workdir / trained.STATE_FILE, trainable, trained.run_meta(
          config, method.task, setup.vocabulary_words(config, data)), self.backbone_state)
    results = self._header(trainable, history)
    results.update(extra_results or {})
    self._evaluate(trainable, results)
    if method.trains and data.kind == "multiclass" and "test" in results:
      results["selection"] = (selection.summary() if selection is not None else
                              test_selection.last_summary(results["test"]["accuracy"],
                                                          config.optim.epochs))
    self.writer.close()
    if data.kind == "multilabel" and config.data.setting == "few_shot":
      from biomedjax.studies import multilabel_study  # the study tables' inputs
      results["multilabel_study"] = multilabel_study.record(
          multilabel_study.write_run_setting(self, trainable, train_minutes))
    if jax.process_index() == 0:
      report_lib.write_run_results(self.workdir, results)
      log.info("results: %s", report_lib.run_outputs_text(self.workdir))
    return results

  def _header(self, trainable, history) -> dict:
    config, data = self.config, self.data
    results = {"method": config.method.name, "dataset": config.data.dataset,
               "shots": config.data.shots, "seed": config.seed, "setting": config.data.setting,
               "task_kind": data.kind, "train_loss": history,
               "skipped_images": data.skipped_images,
               "harness": config.data.get("augment", "") == "harness",
               "k_independent": self.method.k_independent,
               "provenance": provenance.collect(config, data.split_file),
               "trained_state": trained.summary(trainable),
               "trainable_parameters": self.method.parameter_counts(trainable)}
    results.update(run_facts.record(config, data))  # schedule, config, effective K, settings
    short = short_classes(data, config.data.shots)
    if short:
      results["classes_below_shots"] = short
    if config.get("variant", ""):  # a grid point: its row in the sweep's report
      results["variant"] = config.variant
    if config.get("study_cell", ""):  # a study table's cell (e.g. CalibPrompt's study)
      results["study_cell"] = config.study_cell
    if data.source:  # not the paper's split (e.g. tensorflow-datasets'): said in the results
      results["data_source"] = data.source
    return results

  def _evaluate(self, trainable, results: dict) -> None:
    config, data = self.config, self.data
    multiclass = data.kind == "multiclass"
    temperature = None
    if multiclass and config.eval.temperature == "fit":  # on val, else on the few-shot train set
      fit_on = "val" if data.splits.get("val") is not None else "train"
      temperature = calibration.fit_temperature(*self.logits(trainable, fit_on))
      results["temperature"] = {"value": temperature, "fitted_on": fit_on if fit_on == "val"
                                else "train (few-shot set, eval transform; no val split)"}
      log.info("temperature scaling: T = %.4f fitted by NLL on %s", temperature, fit_on)
    process0 = jax.process_index() == 0
    for name, t in self.targets.items():
      logits, labels = self.logits(trainable, name)
      results[name] = evaluate.report(logits, labels, t.classnames, data.kind)
      if process0:
        evaluate.save_predictions(self.workdir, name, logits, labels, t.classnames)
      log_metrics(self.writer, 0, results[name], name)
      log.info("%s: %s", name, evaluate.summary(results[name], data.kind))
      if multiclass and temperature is not None:
        results[name]["temperature_scaled"] = calibrate.scaled_report(logits, labels,
                                                                      t.classnames, temperature)
      if multiclass and process0:
        calibrate.diagrams(config.eval, self.workdir, name, logits, labels, t.classnames)
        if temperature is not None:
          calibrate.diagrams(config.eval, self.workdir, name, logits, labels, t.classnames,
                             temperature)


def short_classes(data, shots: int) -> dict:
  """Classes with fewer training images than K (used whole, as the reference does), by name
  (``run_facts.warn_short_classes`` says so before training)."""
  return {c: n for c, n in run_facts.effective_shots(data, shots).items() if n < shots}


def feature_cache(backbone, params, mesh, config):
  """``image_features(split, source, tower={}) -> FeatureSet``: a split's eval-transform features,
  encoded on its first use and kept (val, test, a fit stage and a pack's points all reuse them).
  ``tower``: the tower state they are encoded under (``tower.py``); the cache keeps each split's
  features of the last state asked for, so drifted statistics are never served stale ones."""
  feature_fn = step_lib.make_feature_fn(backbone)
  features = {}

  def image_features(split, examples, tower=None) -> FeatureSet:
    key = tower_lib.digest(tower)
    if split not in features or features[split][0] != key:
      p = tower_lib.merged(params, tower)
      features[split] = key, FeatureSet(*evaluate.map_images(
          lambda px: feature_fn(p, px), examples, mesh, config.data, f"features {split}",
          config.train.progress))
    return features[split][1]
  return image_features


def _targets(config, data, backbone, params, method, frozen, mesh) -> dict[str, Target]:
  """val, test (``base`` in base-to-novel) and novel. Base-to-novel evaluates the novel classes
  with a second method object built for their names; the base method's ``transfer`` hook
  decides whether (and how) its trained state applies."""
  test_key = "test" if config.data.setting == "few_shot" else "base"
  step_frozen = split_frozen(method, frozen)
  targets = {"val": Target("val", method, step_frozen, data.splits.get("val"), data.classnames),
             test_key: Target("test", method, step_frozen, data.splits["test"],
                              data.classnames)}
  if config.data.setting == "base2novel":
    novel = build_method(config, backbone, data.novel_classnames, data.kind)
    novel_frozen = sharding.replicate({"backbone": params, **novel.prepare(params)}, mesh)
    targets["novel"] = Target("novel_test", novel, split_frozen(novel, novel_frozen),
                              data.novel_test, data.novel_classnames)
  return {k: t for k, t in targets.items() if t.source is not None}


def prepare(config, workdir, like: Run | None = None) -> Run:
  """Builds and checks one experiment; writes only the data audit files (fewshot selection,
  generated synthetic data), never the config. ``like``: a run of the same stream (a pack's
  first point) whose backbone, mesh, frozen pytree and feature cache this one shares."""
  workdir = pathlib.Path(workdir)
  setup.check_model(config.model)  # a preset typo or a missing model dir: nothing written yet
  with distributed.process_zero_first("setup"):  # it writes into the shared workdir
    if config.data.get("source", "files") == "files":
      phases.phase("reading the split file and checking every image ...")
    else:  # data/tfds_source.py: tfds's own records, no split file
      phases.phase("reading the %s records of %r ...", config.data.source, config.data.dataset)
    data = setup.build_data(config.data, config.seed, workdir)
    phases.phase("data set %r; per-dataset settings: %s", config.data.dataset,
                 config.get("dataset_settings", ""))
    if like is None:
      phases.phase("building the backbone ...")
      backbone, params = setup.build_backbone(config.model, workdir,
                                             setup.vocabulary_words(config, data))
    else:
      backbone, params = like.backbone, like.params
  method = build_method(config, backbone, data.classnames, data.kind)
  tower = tower_lib.initial(config, method, params)  # model.tower_mode: refused before writing
  if tower and view_stream.parse_views(config.data.get("views", "online"))[0] != view_stream.ONLINE:
    log.info("data.views=%s: the frozen tower's features of a batch depend on its train-mode "
             "BatchNorm (model.tower_mode=reference), so nothing can be encoded ahead; training "
             "encodes the pixels online", config.data.views)
  view_stream.check(config, method, bool(tower))  # data.views: refused before anything is written
  n_train = len(data.splits["train"])
  steps = batch_and_steps(n_train, config)
  last_batch = config.data.get("last_batch", "drop")
  epoch_batches.check_last_batch(last_batch, config.data.get("epoch_drop_last", False))
  epoch_batches.check_devices(n_train, steps[0], last_batch, jax.device_count(),
                              jax.process_count())
  test_selection.check(config, data.kind, method.trains)
  if like is None:
    mesh = sharding.make_mesh(epoch_batches.mesh_batch(n_train, steps[0], last_batch))
    phases.phase("preparing %s (its frozen inputs, e.g. class prompts, encoded once) ...",
                 config.method.name)
    frozen = sharding.replicate({"backbone": params, **method.prepare(params)}, mesh)
    image_features = feature_cache(backbone, frozen["backbone"], mesh, config)
  else:
    mesh, frozen, image_features = like.mesh, like.frozen, like.image_features
  targets = _targets(config, data, backbone, params, method, frozen, mesh)
  if config.data.setting == "base2novel":  # refuse before training, not after
    method.transfer(jax.eval_shape(method.init, jax.random.key(0), frozen),
                    targets["novel"].method)
  return Run(config, workdir, data, backbone, params, method, mesh, steps, frozen, targets,
             image_features, sharding.replicate(tower, mesh))

