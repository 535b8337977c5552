"""The runs of one setting (same config but the seed) as one computation: ``run``.

The adapter baselines report the mean of three runs that differ only in their seed, and in the
reference harness the three runs even share their few-shot images (``data.split_seed``). So:

* data, backbone, method and its frozen constants are built ONCE;
* the eval-transform val/test features are encoded once and shared;
* each run's augmented training views are encoded with its own seed (they differ);
* the fits run as one vmapped computation (``Method.fit_runs``; methods with ``packs_runs``);
* each run's workdir then gets exactly what ``train_and_evaluate`` writes (config.json,
  trained_state, predictions, results.json/results.md, through ``loop.finish_run``), so the report
  groups them as usual and a later ``train_and_evaluate`` on one of them is a no-op.

``packable(configs)`` says whether a list of configs can go this way; ``launch.py
--sweep=packed`` groups a sweep's points by ``setting_key`` and runs each packable group here.
Single process only.
"""

from __future__ import annotations

import json
import logging
import pathlib
import shutil
import time
import typing

import jax

from biomedjax.methods import METHODS
from biomedjax.train import calibrate, checkpoint, lifecycle, loop, setup, sharding

log = logging.getLogger("biomedjax")

SELECTION_FILE = "fewshot_selection.json"


def setting_key(config) -> str:
  """The config without its seed, as a string: runs with equal keys form one setting."""
  d = json.loads(config.to_json_best_effort())
  d.pop("seed", None)
  return json.dumps(d, sort_keys=True)


def method_class(name: str):
  """The class a ``METHODS`` entry builds (its build function's return annotation), or None."""
  build = METHODS.get(name)
  if build is None:
    return None
  try:
    return typing.get_type_hints(build).get("return")
  except NameError:  # an annotation that does not resolve: treat as not packable
    return None


def _same_data(config) -> bool:
  """Every seed of the setting trains on the same images: the few-shot draw does not use the
  run seed (``data.split_seed`` set, as the adapter harness does) or there is none (K = 0)."""
  return config.data.shots == 0 or bool(config.data.get("split_seed", 0))


def packable(configs) -> bool:
  """True when ``configs`` (two or more) are runs of one setting whose fits pack: equal but the
  seed (distinct), a fit-only method with a vmapped ``fit_runs`` (``packs_runs``), and the same
  images for every seed."""
  configs = list(configs)
  if len(configs) < 2 or len({c.seed for c in configs}) != len(configs):
    return False
  if len({setting_key(c) for c in configs}) != 1:
    return False
  cls = method_class(configs[0].method.name)
  if cls is None or tuple(cls.stages) != ("fit",) or not cls.packs_runs:
    return False
  return _same_data(configs[0])


def run(configs, workdirs) -> list[dict]:
  """Runs ``configs`` (``packable``) into ``workdirs``; returns each run's results. Finished
  runs (a results.json of the same config) are left alone and their results returned."""
  configs, workdirs = list(configs), [pathlib.Path(w) for w in workdirs]
  if len(configs) != len(workdirs):
    raise ValueError(f"fit_pack.run: {len(configs)} configs for {len(workdirs)} workdirs")
  if not packable(configs):
    raise ValueError("fit_pack.run: these configs are not runs of one packable setting (equal "
                     "but the seed, a fit-only method with packs_runs, the same images for "
                     "every seed); run them one by one with train_and_evaluate")
  results: list = [None] * len(configs)
  todo = []
  for i, (config, workdir) in enumerate(zip(configs, workdirs)):
    calibrate.check(config)
    if checkpoint.check_config(workdir, config):  # a different run there is refused
      finished = lifecycle.finished_results(workdir)
      if finished is not None:
        results[i] = finished
        continue
    todo.append(i)
  if not todo:
    return results
  first = configs[todo[0]]
  home = workdirs[todo[0]]
  data = setup.build_data(first.data, first.seed, home)
  backbone, params = setup.build_backbone(first.model, home,
                                         setup.vocabulary_words(first, data))
  for i in todo[1:]:  # the same draw for every seed: the audit file is the same
    workdirs[i].mkdir(parents=True, exist_ok=True)
    if (home / SELECTION_FILE).exists():
      shutil.copyfile(home / SELECTION_FILE, workdirs[i] / SELECTION_FILE)
  method = loop.build_method(first, backbone, data.classnames, data.kind)
  mesh = sharding.make_mesh(loop._batch_and_steps(len(data.splits["train"]), first)[0])
  frozen = sharding.replicate({"backbone": params, **method.prepare(params)}, mesh)
  targets = loop._eval_targets(first, data, backbone, params, method, frozen, mesh)
  if first.data.setting == "base2novel":  # refuse before fitting, not after
    method.transfer(jax.eval_shape(method.init, jax.random.key(0), frozen), targets[-1][2])
  for i in todo:
    checkpoint.write_config(workdirs[i], configs[i])
  image_features = loop.feature_cache(backbone, frozen["backbone"], mesh, first)

  t0 = time.time()
  if not method.fit_needs_data:
    trainables = [method.fit(frozen, None, None)] * len(todo)
  else:
    val = data.splits.get("val")
    val = image_features("val", val) if val is not None else None
    rngs = [jax.random.fold_in(jax.random.key(configs[i].seed), 2) for i in todo]
    if method.fit_views:  # each run's own augmented views (seeded by its run seed)
      trains = [loop.fit_views(method, backbone, frozen["backbone"], data, configs[i])
                for i in todo]
    else:
      trains = [image_features("train", data.splits["train"])] * len(todo)
    log.info("fitting %d runs of %s as one computation (seeds %s)", len(todo), method.name,
             [configs[i].seed for i in todo])
    trainables = method.fit_runs(frozen, trains, val, rngs)
  minutes = (time.time() - t0) / 60 / len(todo)  # each run's share

  from tensorboardX import SummaryWriter
  for i, trainable in zip(todo, trainables):
    writer = SummaryWriter(str(workdirs[i] / "tensorboard"))
    results[i] = loop.finish_run(configs[i], workdirs[i], data, backbone, method,
                                 loop.split_frozen(method, frozen), mesh, targets,
                                 sharding.replicate(trainable, mesh), [], minutes,
                                 image_features, writer)
  return results
