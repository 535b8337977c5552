"""The runs of one setting (same config but the seed) as one computation: ``run``.

The adapter baselines report the mean of three runs that differ only in their seed, and in the
reference harness the three runs even share their few-shot images (``data.split_seed``). So:

* data, backbone, method and its frozen constants are built ONCE;
* the eval-transform val/test features are encoded once and shared;
* each run's augmented training views are encoded with its own seed (they differ);
* the fits run as one vmapped computation (``Method.fit_runs``; methods with ``packs_runs``);
* each run's workdir then gets exactly what ``train_and_evaluate`` writes (config.json,
  trained_state, predictions, results.json/results.md, through ``Run.finish``), so the report
  groups them as usual and a later ``train_and_evaluate`` on one of them is a no-op.

``packable(configs)`` says whether a list of configs can go this way; ``launch.py
--sweep=packed`` groups a sweep's points by ``setting_key`` and runs each packable group here.
Single process only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import shutil
import time

import jax

from biomedjax.methods import METHODS
from biomedjax.train import loop

log = logging.getLogger("biomedjax")

SELECTION_FILE = "fewshot_selection.json"


def setting_key(config) -> str:
  """The config without its seed, as a string: runs with equal keys form one setting."""
  d = json.loads(config.to_json_best_effort())
  d.pop("seed", None)
  return json.dumps(d, sort_keys=True)


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
  cls = METHODS.get(configs[0].method.name)
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
    results[i] = loop.finished(config, workdir)  # reads only; a different run is refused
    if results[i] is None:
      todo.append(i)
  if not todo:
    return results
  home = loop.prepare(configs[todo[0]], workdirs[todo[0]])
  for i in todo[1:]:  # the same draw for every seed: the audit file is the same
    workdirs[i].mkdir(parents=True, exist_ok=True)
    if (home.workdir / SELECTION_FILE).exists():
      shutil.copyfile(home.workdir / SELECTION_FILE, workdirs[i] / SELECTION_FILE)
  runs = [dataclasses.replace(home, config=configs[i], workdir=workdirs[i]).lock() for i in todo]
  method = home.method
  t0 = time.time()
  if not method.fit_needs_data:
    trainables = [method.fit(home.frozen, None, None)] * len(todo)
  else:
    val = home.fit_val()
    rngs = [jax.random.fold_in(jax.random.key(r.config.seed), 2) for r in runs]
    # each run's own augmented views (seeded by its run seed), else the shared features
    trains = [r.fit_train() for r in runs] if method.fit_views else [home.fit_train()] * len(todo)
    log.info("fitting %d runs of %s as one computation (seeds %s)", len(todo), method.name,
             [r.config.seed for r in runs])
    trainables = method.fit_runs(home.frozen, trains, val, rngs)
  minutes = (time.time() - t0) / 60 / len(todo)  # each run's share
  for i, r, trainable in zip(todo, runs, trainables):
    results[i] = r.finish(trainable, [], minutes)
  return results
