"""Resumable run state with orbax: what trains, the optimizer, the step, the RNG and the data.

Only the trainable pytree, its optimizer state and the frozen tower's mutable state (``tower``:
BatchNorm running statistics that drift in the reference's train mode, ``biomedjax/train/
tower.py``; stored only when non-empty, so an eval-mode run's checkpoint is what it always was)
are saved: the backbone is the converted directory the config names, recorded in the run's
``config.json``. The grain iterator state is
saved beside them, so a resumed run sees exactly the batches an uninterrupted one would.
Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact.

A checkpoint that cannot be restored, or a workdir whose ``config.json`` disagrees with the new
config, is an error that leaves everything on disk untouched: resuming never overwrites a run
it does not understand.
"""

from __future__ import annotations

import json
import logging
import pathlib

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from biomedjax.train import distributed

log = logging.getLogger("biomedjax")

CONFIG_FILE = "config.json"
# Keys that may change between a run and its resumption without changing its result.
OPERATIONAL_KEYS = ("train.log_every_steps", "train.ckpt_every_steps",
                    "train.ckpt_every_minutes",
                    "train.ckpt_min_seconds", "train.progress", "data.workers", "data.read_ahead",
                    "data.encode_batch", "data.view_cache", "pack")


class CheckpointError(RuntimeError):
  """A workdir that cannot be resumed; the message names the path and what is wrong."""


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    out.update(_flat(v, key + ".") if isinstance(v, dict) else {key: v})
  return out


def check_config(workdir: pathlib.Path, config) -> bool:
  """Reads nothing but ``config.json``, writes nothing: True when the workdir already holds this
  run, False when it holds none; a different run there is a ``CheckpointError``."""
  path = workdir / CONFIG_FILE
  if not path.exists():
    return False
  new = json.loads(config.to_json_best_effort())
  try:
    old = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{path} is not valid JSON ({e}); not resuming over it") from e
  a, b = _flat(old), _flat(new)
  differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in OPERATIONAL_KEYS)
  if differ:
    detail = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in differ[:5])
    raise CheckpointError(f"{workdir} holds a run with a different config ({detail}); use another "
                          "--workdir, or delete this one to start over")
  return True


def write_config(workdir: pathlib.Path, config) -> None:
  """Writes ``config.json`` atomically; called once the data and the model are known good, so a
  setup error (a typo'd path) never locks the workdir to the wrong config."""
  path = workdir / CONFIG_FILE
  workdir.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(json.loads(config.to_json_best_effort()), indent=2, sort_keys=True))
  tmp.replace(path)


def check_or_write_config(workdir: pathlib.Path, config) -> bool:
  """``check_config``, then ``write_config`` for a new run. Returns True when the workdir
  already held this run."""
  if check_config(workdir, config):
    return True
  write_config(workdir, config)
  return False


class Checkpointer:
  """Saves and restores ``{trainable, opt_state, step, rng[, tower]}`` plus a grain iterator."""

  def __init__(self, workdir: pathlib.Path, keep: int = 2):
    self.directory = pathlib.Path(workdir).absolute() / "checkpoints"
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  @staticmethod
  def _state(trainable, opt_state, step, rng, tower) -> dict:
    state = {"trainable": trainable, "opt_state": opt_state, "step": np.asarray(step, np.int64),
             "rng": np.asarray(jax.random.key_data(rng))}
    if tower:
      state["tower"] = tower
    return state

  def save(self, step: int, trainable, opt_state, rng, data_iter, tower=None) -> None:
    state = self._state(trainable, opt_state, step, rng, tower)
    try:
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data_iter=grain.checkpoint.CheckpointSave(data_iter)), force=True)
      self.manager.wait_until_finished()
    except Exception as e:  # a full disk, a quota, a lost mount: say so, and what is intact
      intact = [s for s in self.manager.all_steps() if s < step]
      raise CheckpointError(
          f"cannot save the checkpoint of step {step} in {self.directory} ({type(e).__name__}: "
          f"{str(e).splitlines()[0][:300] if str(e) else ''}); "
          + (f"the checkpoint of step {max(intact)} is intact" if intact else
             "there is no earlier checkpoint")
          + ": free disk space (a full disk is the usual cause), then run the same command "
          "again to resume") from e

  def restore(self, step: int, trainable, opt_state, rng, data_iter, tower=None):
    """Restores into the structure (and shardings) of the given freshly-initialised values;
    -> (trainable, opt_state, step, rng, tower)."""
    target = self._state(trainable, opt_state, 0, rng, tower)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          data_iter=grain.checkpoint.CheckpointRestore(data_iter)))
    except Exception as e:  # orbax raises many types; all mean "this one cannot be used"
      raise CheckpointError(
          f"cannot restore checkpoint {self.directory / str(step)} ({type(e).__name__}: "
          f"{str(e).splitlines()[0][:300]}). It was left untouched; move it away, or use another "
          "--workdir, to start over") from e
    s = restored["state"]
    return (s["trainable"], s["opt_state"], int(s["step"]), jax.random.wrap_key_data(s["rng"]),
            s.get("tower", tower or {}))

  def restore_latest(self, trainable, opt_state, rng, data_iter, tower=None):
    """``restore`` of the newest readable checkpoint -> (trainable, opt_state, step, rng, tower),
    or None when there is none.

    A newest checkpoint that cannot be read (cut short by a full disk or an interrupted copy)
    is a warning naming its step; the previous one is restored instead, and the unreadable ones
    are moved to ``checkpoints.unreadable/`` (kept, not deleted; out of orbax's way, so that
    the next saves are not ranked behind them). Only when none can be read is it an error,
    and then nothing is moved.
    """
    steps = sorted(self.manager.all_steps(), reverse=True)
    errors = []
    for step in steps:
      try:
        restored = self.restore(step, trainable, opt_state, rng, data_iter, tower)
      except CheckpointError as e:
        errors.append((step, e))
        continue
      for bad, e in errors:
        log.warning("checkpoint of step %d cannot be read (%s); resuming from step %d instead",
                    bad, str(e.__cause__ or e).splitlines()[0][:200], step)
      self._set_aside([bad for bad, _ in errors])
      return restored
    if errors:
      raise CheckpointError(
          "no checkpoint in " f"{self.directory} can be read: " + "; ".join(
              f"step {s}: {e}" for s, e in errors[:3]))
    return None

  def _set_aside(self, steps: list[int]) -> None:
    if not steps:
      return
    if jax.process_index() == 0:
      aside = self.directory.with_name(self.directory.name + ".unreadable")
      aside.mkdir(exist_ok=True)
      for step in steps:
        target = aside / str(step)
        if target.exists():
          target = aside / f"{step}-{len(list(aside.iterdir()))}"
        (self.directory / str(step)).rename(target)
        log.warning("moved the unreadable checkpoint of step %d to %s", step, target)
    if jax.process_count() > 1:
      distributed.barrier("checkpoint-set-aside")
    self.manager.reload()

  def close(self) -> None:
    self.manager.close()
