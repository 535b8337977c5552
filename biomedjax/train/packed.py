"""Packed sweeps: the points of a sweep that share a view stream train as one vmapped program.

Why: the frozen image tower, the bulk of a prompt-learning step, does not depend on the
hyperparameters a grid varies (BiomedCoOp's lambdas and tau, KgCoOp's W, the learning rate...).
Points that see the same batches (same dataset, shots, seed, split seed, batch size, schedule,
model and data settings: everything in the config but ``method.*`` and ``optim.lr``) form a
*pack*. Each step of a pack encodes its batch once and applies every point's update, vmapped
over a leading point axis of the trainable pytree and the optimizer state; the eval features
are encoded once and all points' eval logits come from one vmapped program.

How points differ inside one program: the differing ``method.*`` fields and ``optim.lr`` become
per-point traced float32 scalars. The method object is copied with its options replaced by them
(``dataclasses.replace``), the optimizer is built with the traced LR, and the dropout key is the
one the point's own run would use, so each lane computes what that run computes (equal to
~1e-7 relative per step; XLA may order a batched reduction differently). A field that sets the
program's structure cannot be traced and the pack is refused, naming it: an int, str or bool
option (``n_ctx``, ``ctx_init``, ``text_dropout``) before anything is written; a float the method
branches on in Python when the first step traces (the points' config.json files are written by
then; ``--sweep=run`` over the same workdirs accepts them). This relies on the options contract
of ``biomedjax/methods/base.py`` (float options read from ``self.opts`` when the method
computes), which tests/methods/test_method_contract.py checks for every registered method.

What each point gets: its own workdir (the one ``--sweep=run`` would use) with config.json,
fewshot_selection.json, tensorboard, train_history.json, trained_state, predictions, reliability
diagrams and results.json/md, as its own run writes them; results.json adds ``pack`` (the pack's
directory, size and the point's index). The checkpoints are the pack's: its stacked state lives
in ``<sweep workdir>/packs/<id>/`` (``pack.json`` lists the points) and is saved by the
single-run policy (every epoch, every N minutes, on Ctrl-C/SIGTERM); running the same sweep
again resumes it, and points with a results.json are skipped before packing.

Run one by one instead, with a log line saying why: methods with a ``fit`` stage (closed-form
fits on features, not gradient steps), runs with early stopping (each
point would stop at its own epoch) or per-epoch test selection (``eval.select="best_test"``),
runs that keep partial batches (``data.last_batch="keep"``), and packs of one point: points that differ in ``seed`` (or
any other stream setting) see different batches and never share a pack.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from biomedjax.methods.base import Method
from biomedjax.train import (calibrate, checkpoint, loop, sharding, step as step_lib,
                             tower as tower_lib, workdir_lock)

log = logging.getLogger("biomedjax")
LR_KEY = "optim.lr"
# Keys that neither separate packs nor vary inside one (how a sweep is launched and logged).
IGNORED_KEYS = (*checkpoint.OPERATIONAL_KEYS, "pack", "run_sweep", "variant")
PACKS_DIR = "packs"
PACK_FILE = "pack.json"
TRACE_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError)


class PackError(ValueError):
  """Points that cannot train as one program; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Point:
  """One run of a sweep: its locked config and the workdir ``--sweep=run`` would give it."""
  config: object
  workdir: pathlib.Path


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
  return out


def flat_config(config) -> dict:
  """``{"optim.lr": 0.002, ...}``: the config as config.json stores it, flattened."""
  return _flat(json.loads(config.to_json_best_effort()))


def is_hyper(key: str) -> bool:
  """Keys that may differ inside a pack: the method's options and the learning rate."""
  return key == LR_KEY or (key.startswith("method.") and key != "method.name")


def stream_key(config) -> str:
  """Everything that decides a run's batches and program apart from its hyperparameters."""
  flat = flat_config(config)
  return json.dumps({k: v for k, v in flat.items() if not is_hyper(k) and k not in IGNORED_KEYS},
                    sort_keys=True)


def differing(configs) -> dict[str, list]:
  """key -> the configs' values, for the flat keys whose values are not all equal."""
  flats = [flat_config(c) for c in configs]
  keys = sorted(set().union(*flats))
  return {k: [f.get(k) for f in flats] for k in keys
          if len({json.dumps(f.get(k)) for f in flats}) > 1}


def group(points: list[Point]) -> list[list[Point]]:
  """Points -> packs of points with the same ``stream_key``, in sweep order; logs what separates
  the packs (a seed, a dataset, ...)."""
  packs: dict[str, list[Point]] = {}
  for p in points:
    packs.setdefault(stream_key(p.config), []).append(p)
  groups = list(packs.values())
  if len(groups) > 1:
    heads = differing([g[0].config for g in groups])
    split = {k: sorted(set(map(str, v))) for k, v in heads.items()
             if not is_hyper(k) and k not in IGNORED_KEYS}
    log.info("%d points -> %d packs: points that differ in %s (their batches or programs) "
             "cannot share a pack", len(points), len(groups),
             ", ".join(f"{k} ({', '.join(v)})" for k, v in split.items()))
    if "seed" in split:
      log.info("points that differ in seed train as separate packs (the seed drives the data "
               "order, the augmentation and the initialisation); the seeds are not packed")
  return groups


def check_fields(values: dict[str, list], method: Method | None = None) -> None:
  """Refuses differing fields that cannot be traced: options that are not floats in the config
  (ints, strings and bools set shapes, texts and branches), and, once ``method`` is built, the
  LR of a method with its own optimizer hook or a field its options do not declare a float."""
  declared = {f.name: f.default for f in dataclasses.fields(method.opts)} if method else {}
  for key, vals in values.items():
    if key == LR_KEY:
      if method is not None and not method.lr_packs:
        raise PackError(f"optim.lr differs between the points, but method {method.name!r} "
                        "builds its own optimizer; it cannot be packed; use --sweep=run")
      continue
    name = key.split(".", 1)[1]
    floats = all(isinstance(v, float) for v in vals)
    if not floats or (method is not None and not isinstance(declared.get(name), float)):
      raise PackError(f"{key} ({', '.join(map(str, vals))}) changes the program's structure and "
                      "cannot be packed; use --sweep=run")


class PackProgram:
  """A pack's compiled functions (init, train step, eval logits), vmapped over its points.

  ``values``: flat key (``method.<field>`` or ``optim.lr``) -> one value per point, for the keys
  that differ; every other setting is the reference point's (``method``, ``config``).
  """

  def __init__(self, method: Method, backbone, config, steps_per_epoch: int,
               values: dict[str, list], size: int, schedules=()):
    self.method, self.backbone, self.config = method, backbone, config
    self.per_epoch, self.size = steps_per_epoch, size
    self.values = values
    self.table = {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
    self.table["_point"] = jnp.arange(size)  # the point axis, also when nothing differs
    self.schedules = list(schedules)  # each point's step -> lr (for its logged metrics)
    self._logits = None

  def method_at(self, h: dict) -> Method:
    """The method with this point's (traced) option values."""
    opts = {k.split(".", 1)[1]: v for k, v in h.items() if k.startswith("method.")}
    if not opts:
      return self.method
    m = copy.copy(self.method)
    m.opts = dataclasses.replace(self.method.opts, **opts)
    return m

  def tx_at(self, h: dict):
    """The optimizer with this point's (traced) learning rate."""
    optim = self.config.optim
    if LR_KEY in h:
      optim = {**optim.to_dict(), "lr": h[LR_KEY]}
    return self.method_at(h).optimizer(optim, self.per_epoch)[0]

  def init(self, rng, frozen):
    """(trainable, opt_state), stacked over the points."""
    def one(h, rng, frozen):
      trainable = self.method_at(h).init(rng, frozen)
      return trainable, self.tx_at(h).init(trainable)
    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))(self.table, rng, frozen)

  def step_fn(self, trainable, opt_state, tower, table, frozen, batch, rng, i):
    """One step of every point: the batch through the frozen tower once, then vmapped updates.
    ``tower`` (train-mode BatchNorm statistics, ``biomedjax/train/tower.py``) depends on the
    batches alone, which the points share: one state for the pack, updated once per step."""
    frozen, tower = jax.lax.stop_gradient((frozen, tower))
    batch, tower = tower_lib.train_batch(self.method, self.backbone, frozen["backbone"], tower,
                                         batch)
    key = jax.random.fold_in(rng, i)

    def one(tr, state, h):
      return step_lib.apply_step(self.method_at(h), self.tx_at(h), tr, state, frozen, batch, key)
    trainable, opt_state, metrics = jax.vmap(one)(trainable, opt_state, table)
    return trainable, opt_state, tower, metrics

  def make_step(self, mesh):
    """The loop's step ``(trainable, opt_state, tower, frozen, batch, rng, i)``, every point at
    once."""
    repl = sharding.replicated(mesh)
    step = jax.jit(self.step_fn, donate_argnums=(0, 1), out_shardings=(repl,) * 4)
    return lambda tr, state, tower, frozen, batch, rng, i: step(tr, state, tower, self.table,
                                                                frozen, batch, rng, i)

  # -- the training loop's stepper protocol (``biomedjax.train.loop.train``) -------------------
  def lane_metrics(self, m: dict) -> list[dict]:
    return [{k: v[p] for k, v in m.items()} for p in range(self.size)]

  def lr(self, lane: int, i: int) -> float:
    return float(self.schedules[lane](i))

  def traced(self, fn):
    """``fn()`` (the pack's first init or step traces it); see ``traced``."""
    return traced(fn, self.values, self.method.name)

  def logits(self, trainable, frozen, features) -> np.ndarray:
    """(P, n, C) eval logits of every point from shared features (n, D)."""
    if self._logits is None:
      def one(tr, h, frozen, x):
        return self.method_at(h).logits(tr, frozen, x)
      self._logits = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))
    return np.asarray(self._logits(trainable, self.table, frozen, features))


def traced(fn, values: dict, method_name: str):
  """``fn()`` (the pack's first init or step, which traces it); a differing field the method
  uses in Python control flow fails there, and becomes a PackError naming the field(s)."""
  try:
    return fn()
  except TRACE_ERRORS as e:
    raise PackError(f"{' or '.join(sorted(values))} changes the program's structure and cannot "
                    f"be packed (method {method_name!r} branches on it in Python); use "
                    "--sweep=run") from e


def pack_dir(sweep_dir, points: list[Point]) -> pathlib.Path:
  """``<sweep>/packs/pack-<hash of the points' workdir names>``: the same points, the same dir."""
  names = json.dumps(sorted(p.workdir.name for p in points))
  digest = hashlib.sha1(names.encode()).hexdigest()[:12]
  return pathlib.Path(sweep_dir) / PACKS_DIR / f"pack-{digest}"


def _manifest(points: list[Point], values: dict) -> dict:
  return {"points": [str(p.workdir) for p in points], "values": values,
          "stream": json.loads(stream_key(points[0].config))}


def _check_or_write_manifest(directory: pathlib.Path, manifest: dict, write: bool) -> None:
  path = directory / PACK_FILE
  if path.is_file():
    old = json.loads(path.read_text())
    if old != json.loads(json.dumps(manifest)):
      raise checkpoint.CheckpointError(f"{path} belongs to another pack (other points or "
                                       "settings); move it away to start this one over")
  elif write and jax.process_index() == 0:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(path)


def run_pack(points: list[Point], directory) -> list[dict]:
  """Trains ``points`` (same stream, differing hyperparameters) as one program and writes each
  point's run outputs; -> their results. Methods with a fit stage and runs with early stopping
  are run one by one (logged)."""
  directory = pathlib.Path(directory)
  ref = points[0].config
  for p in points:
    calibrate.check(p.config)
    checkpoint.check_config(p.workdir, p.config)  # reads only; another run there is refused
  diff = differing([p.config for p in points])
  stream = sorted(k for k in diff if not is_hyper(k) and k not in IGNORED_KEYS)
  if stream:
    raise PackError("the points of a pack must share their view stream (dataset, shots, seed, "
                    f"batch, schedule...); these differ: {stream}")
  values = {k: v for k, v in diff.items() if is_hyper(k)}
  check_fields(values)  # before anything is written
  if ref.train.get("early_stopping_patience", 0):
    return _one_by_one(points, "early stopping is on (each point would stop at its own epoch)")
  if ref.eval.get("select", "last") == "best_test":
    return _one_by_one(points, "eval.select=best_test (each point keeps its own best test epoch)")
  if ref.data.get("last_batch", "drop") == "keep":
    return _one_by_one(points, "data.last_batch=keep (partial batches are not packed)")
  first = loop.prepare(ref, points[0].workdir)
  runs = [first] + [loop.prepare(p.config, p.workdir, like=first) for p in points[1:]]
  method = first.method
  if method.fits or not method.trains:
    return _one_by_one(points, f"method {method.name!r} has a fit stage (not a gradient pack)")
  check_fields(values, method)
  _check_or_write_manifest(directory, _manifest(points, values), write=True)
  for r in runs:
    r.lock(purge_dir=directory)
  log.info("pack %s: %d points differing in %s", directory, len(points),
           ", ".join(f"{k} {v}" for k, v in values.items()) or "nothing")
  prog = PackProgram(method, first.backbone, ref, first.steps[1], values, len(points),
                     [method.optimizer(p.config.optim, first.steps[1])[1] for p in points])
  t0 = time.time()
  trainable, histories, diverged = loop.train(
      first, prog, [loop.Lane(r.workdir, r.writer) for r in runs], directory)
  train_minutes = (time.time() - t0) / 60
  for r in runs[1:]:  # the pack's one tower state (train-mode statistics) is every point's
    r.backbone_state = first.backbone_state
  cache = {}

  def lane_logits(p):
    def logits(cache_key, feats):
      if cache_key not in cache:
        cache[cache_key] = prog.logits(trainable, first.step_frozen, jnp.asarray(feats))
      return cache[cache_key][p]
    return logits

  results = []
  for p, r in enumerate(runs):
    if p in diverged:
      r.writer.close()
      continue
    r.lane_logits = lane_logits(p)
    extra = {"pack": {"dir": str(directory), "points": len(points), "index": p}}
    results.append(r.finish(jax.tree.map(lambda x, p=p: x[p], trainable), histories[p],
                            train_minutes, extra))
  if diverged:
    raise loop.TrainingDiverged(
        "non-finite metrics in " + ", ".join(f"{points[p].workdir} (step {s})"
                                             for p, s in diverged.items())
        + f"; the pack's checkpoints in {directory} are intact, the other points are written")
  return results


def _one_by_one(points: list[Point], why: str) -> list[dict]:
  log.info("not packing %d point(s): %s; running them one by one", len(points), why)
  return [loop.train_and_evaluate(p.config, p.workdir) for p in points]


def run_sweep(points: list[Point], sweep_dir) -> None:
  """Skips finished points, groups the rest into packs and runs each (a pack of one point is
  that point's own run)."""
  for pack in group(loop.unfinished(points)):
    if len(pack) == 1:
      log.info("a pack of one point runs alone: %s", pack[0].workdir)
      loop.train_and_evaluate(pack[0].config, pack[0].workdir)
    else:
      directory = pack_dir(sweep_dir, pack)
      with workdir_lock.hold(directory, *(p.workdir for p in pack)):  # one run per workdir
        run_pack(pack, directory)
