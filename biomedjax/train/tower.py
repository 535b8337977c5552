"""The frozen image tower's mutable state (BatchNorm running statistics) as run state.

Why: a reference that registers its whole CLIP wrapper with Dassl has the frozen tower put in
train mode every epoch. BiomedCoOp's PMC-CLIP trainer does (``register_model("prompt_learner",
self.model, ...)``, ``trainers/BiomedCoOp/biomedcoop_pmcclip.py:330``; its bundled Dassl calls
``self._models[name].train()`` from ``TrainerX.run_epoch`` -> ``set_model_mode("train")``,
``Dassl.pytorch/dassl/engine/trainer.py:206-211,731-733``; upstream Dassl ``trainer.py:203-208,
586-587``), so the frozen ResNet normalises each training batch with its own statistics and its
running statistics drift; ``test()`` (``set_model_mode("eval")``, bundled ``trainer.py:584-587``)
then evaluates with the drifted statistics, and ``save_model`` stores them with the wrapper's
``state_dict`` (bundled ``trainer.py:119-135``). A method declares this with
``Method.tower_train_passes`` (how many train-mode tower forwards the reference makes per step).

The engine then carries ``tower`` = the backbone's mutable collections (``{"batch_stats": ...}``)
next to the trainable state: an argument and a result of the compiled train step (never in the
optax pytree, never differentiated), saved in every checkpoint, restored on resume, used by every
evaluation (``Run.logits``, the feature cache keys on it) and written into the trained-state
file. ``{}`` when the tower stays in eval mode (every other method, a tower without BatchNorm,
or ``--config.model.tower_mode=eval``, the clean behaviour), and then nothing changes.

In train mode the features depend only on the batch (batch statistics), not on the running
statistics: ``passes`` forwards of one batch give the same features and the same batch
statistics, so the k momentum updates collapse into one:
``r_k = r + (1 - (1 - m)^k) / m * (r_1 - r)`` with ``r_1`` the statistics after one pass.
"""

from __future__ import annotations

import hashlib
import logging

import jax
import numpy as np

from biomedjax.models.clip import STATS
from biomedjax.models.resnet import BatchNorm

log = logging.getLogger("biomedjax")

REFERENCE, EVAL = "reference", "eval"
MODES = (REFERENCE, EVAL)


def mode(config) -> str:
  """``config.model.tower_mode``: "reference" (default) or "eval"; anything else is refused."""
  value = config.model.get("tower_mode", REFERENCE)
  if value not in MODES:
    raise ValueError(f"--config.model.tower_mode={value!r}: use 'reference' (the tower in the "
                     "reference's mode: train-mode BatchNorm where the method's reference puts it "
                     "there) or 'eval' (the frozen tower always in eval mode)")
  return value


def initial(config, method, backbone_params) -> dict:
  """The run's initial tower state: the backbone's running statistics when the method's
  reference trains through the tower in train mode and the backbone has BatchNorm; else {}."""
  passes = method.tower_train_passes
  if mode(config) == EVAL or not passes or not method.trains or STATS not in backbone_params:
    return {}
  if method.inputs != "features":
    raise ValueError(f"method {method.name!r} declares tower_train_passes={passes} but trains "
                     "on pixels; only the engine's frozen-tower pass (inputs='features') runs "
                     "the tower in train mode")
  picks = {k: v for k, v in (("train.early_stopping_patience",
                              config.train.get("early_stopping_patience", 0)),
                             ("eval.select", config.eval.get("select", "last")))
           if v not in (0, "last")}
  if picks:  # they would evaluate an earlier epoch's trainable under the last epoch's statistics
    raise ValueError(f"{', '.join(f'{k}={v!r}' for k, v in picks.items())} picks an earlier "
                     f"epoch, but {method.name!r} drifts the tower's BatchNorm statistics every "
                     "step and that epoch's statistics are not kept; add "
                     "--config.model.tower_mode=eval, or drop the option")
  log.info("the frozen image tower runs in train mode during training, as %s's reference does "
           "(BatchNorm on batch statistics, running statistics updated %d time(s) per step and "
           "used by evaluation); --config.model.tower_mode=eval keeps it in eval mode",
           method.name, passes)
  return {STATS: backbone_params[STATS]}


def merged(backbone_params, tower: dict):
  """The backbone pytree with the tower state's collections in place of the converted ones."""
  return {**backbone_params, **tower} if tower else backbone_params


def with_tower(frozen: dict, tower: dict) -> dict:
  """``frozen`` whose backbone carries ``tower`` (what an evaluation under it sees)."""
  return {**frozen, "backbone": merged(frozen["backbone"], tower)} if tower else frozen


def train_batch(method, backbone, backbone_params, tower: dict, batch: dict):
  """The method batch of a train step and the updated tower state: -> (batch, tower).

  ``tower`` empty: the eval-mode tower (``step.method_batch``). Otherwise the tower in train mode,
  its statistics moved by ``method.tower_train_passes`` momentum updates (module doc)."""
  from biomedjax.train.step import method_batch  # step imports this module
  if not tower:
    return method_batch(method, backbone, backbone_params, batch), tower
  params = merged(backbone_params, tower)
  feats, new = backbone.encode_pixels_train(params, backbone.normalize(batch["image"]))
  k, m = method.tower_train_passes, BatchNorm.momentum
  factor = (1 - (1 - m) ** k) / m
  stats = jax.tree.map(lambda r, r1: r + factor * (r1 - r), tower[STATS], new[STATS])
  return {**batch, "features": feats}, {STATS: jax.lax.stop_gradient(stats)}


def digest(tower: dict) -> str:
  """A content key of the tower state ('' when empty): the feature cache's key part."""
  if not tower:
    return ""
  h = hashlib.sha1()
  for leaf in jax.tree.leaves(jax.device_get(tower)):
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()[:16]
