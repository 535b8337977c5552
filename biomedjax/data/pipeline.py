"""Train and eval input pipelines on grain, yielding global ``jax.Array`` batches.

Public functions:
  ``train_dataset(source, *, global_batch_size, seed, ...)``: a grain ``IterDataset`` of this
      process's batches (NumPy); deterministic for a seed, also with ``worker_count`` > 0.
  ``eval_dataset(source, *, global_batch_size, ...)``: every example exactly once over all
      processes; the last global batch is padded and ``mask`` is False on padding.
  ``make_train_iterator(source, *, mesh, ...)`` / ``make_eval_iterator(...)``: the same as
      iterators of global arrays sharded ``P('data')`` on ``mesh``. They are grain
      ``DatasetIterator``s, so ``get_state``/``set_state`` and orbax's
      ``grain.checkpoint.CheckpointSave/CheckpointRestore`` work on them directly.

Batches are ``{"image": uint8 (B, S, S, 3), "label": int32 (B,) | float32 (B, C),
"mask": bool (B,)}`` with B the GLOBAL batch size; each process holds B / process_count rows.

Order of operations (as big_vision/grain input pipelines do): source -> seeded shuffle
(reshuffled every epoch) -> repeat -> augment -> ``[process_index::process_count]`` -> batch.
Augmenting before the process slice seeds every example's augmentation by its global position, so
the global batches are the same whatever the number of processes (process p holds rows p, p + n,
... of each global batch).
``process_index``/``process_count`` default to JAX's and may be passed to simulate hosts.
"""

from __future__ import annotations

import functools
import math
import os

from absl import flags
import grain
import jax
import numpy as np

from biomedjax.data import epoch_batches, transforms


def _process(process_index, process_count) -> tuple[int, int]:
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  if not 0 <= pi < pc:
    raise ValueError(f"process_index {pi} not in [0, {pc})")
  return pi, pc


def _local_batch_size(global_batch_size: int, process_count: int) -> int:
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(f"global batch size {global_batch_size} must be a positive multiple of "
                     f"the process count {process_count}")
  return global_batch_size // process_count


def _stack(records):
  """Batch function: images uint8 (the model normalises), labels int32 or float32 multi-hot."""
  labels = np.stack([r["label"] for r in records])
  return {"image": np.stack([r["image"] for r in records]),
          "label": labels.astype(np.float32 if labels.ndim == 2 else np.int32),
          "mask": np.array([r["mask"] for r in records], bool)}


def _allow_unparsed_absl_flags():
  """grain's worker processes read absl flags; outside an absl app they were never parsed."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def read_options(read_ahead: int = -1) -> grain.ReadOptions:
  """How far each process decodes ahead of the step, in batches (``config.data.read_ahead``).

  grain's default (16 threads, a buffer of 500) counts elements, and the elements here are whole
  batches: it decoded and augmented up to 500 batches ahead (1.2 GB of uint8 images at batch 16),
  several times what a short run uses, on the cores the step needs: a 4-step run took 2-3x the
  CPU time (benchmarks/README.md, "Reading ahead"). -1: one thread per core (at most
  16), each one batch ahead plus one waiting; 0: decoded in the training thread, nothing ahead;
  n > 0: n batches ahead in min(n, cores, 16) threads. The batches and their order do not depend
  on it.
  """
  if read_ahead < 0:
    threads = min(16, _cores())
    return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2 * threads)
  return grain.ReadOptions(num_threads=min(read_ahead, _cores(), 16),
                           prefetch_buffer_size=read_ahead)


def _cores() -> int:
  try:
    return len(os.sched_getaffinity(0))  # the cores this process may use (a cgroup, taskset)
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def _finish(ds: grain.MapDataset, local_batch_size: int, drop_remainder: bool,
            worker_count: int, read_ahead: int) -> grain.IterDataset:
  ds = ds.batch(local_batch_size, drop_remainder=drop_remainder, batch_fn=_stack)
  return _finish_batches(ds, worker_count, read_ahead)


def _drop_last_per_epoch(ds: grain.MapDataset, n: int, batch: int, seed: int
                         ) -> grain.MapDataset:
  """Keeps the first ``n - n % batch`` items of every epoch of a shuffled, repeated stream.

  Dassl's train loader (``drop_last=True`` when the set holds at least a batch): every epoch is
  a fresh shuffle cut into whole batches and its remainder is thrown away, e.g. 24 images at
  batch 16 give one step per epoch on a random 16. Without this the stream's batches run across
  epoch boundaries (the remainder starts the next batch).
  """
  keep = n - n % batch
  if keep in (0, n):
    return ds
  return grain.MapDataset.range(len(ds) // n * keep).seed(seed).map(_EpochPrefix(ds, n, keep))


class _EpochPrefix:
  """i -> item ``i % keep`` of epoch ``i // keep`` (a class, not a lambda: workers pickle it)."""

  def __init__(self, ds, n: int, keep: int):
    self.ds, self.n, self.keep = ds, n, keep

  def __call__(self, i):
    return self.ds[(i // self.keep) * self.n + i % self.keep]


def train_dataset(source, *, global_batch_size: int, seed: int, image_size: int = 224,
                  num_epochs: int | None = None, process_index: int | None = None,
                  process_count: int | None = None, worker_count: int = 0,
                  epoch_drop_last: bool = False, random_flip: bool = False,
                  last_batch: str = "drop", resize_first: bool = False,
                  read_ahead: int = -1) -> grain.IterDataset:
  """Shuffled, augmented, repeated (forever unless ``num_epochs``) batches; last partial dropped.

  ``epoch_drop_last``: drop each epoch's partial batch instead (Dassl's loader; see
  ``_drop_last_per_epoch``). ``last_batch="keep"``: every epoch cut into batches with its
  partial batch kept (``biomedjax.data.epoch_batches``). ``random_flip``: horizontal flip with
  p 0.5 after the crop. ``resize_first``: Resize(image_size) before the crop. ``read_ahead``:
  batches decoded ahead (``read_options``).
  """
  if len(source) == 0:
    raise ValueError(f"empty training source {source!r}")
  epoch_batches.check_last_batch(last_batch, epoch_drop_last)
  pi, pc = _process(process_index, process_count)
  local = _local_batch_size(global_batch_size, pc)
  ds = grain.MapDataset.source(source).seed(seed).shuffle().repeat(num_epochs)
  if epoch_drop_last:
    ds = _drop_last_per_epoch(ds, len(source), global_batch_size, seed)
  ds = ds.random_map(transforms.TrainTransform(image_size, random_flip, resize_first))
  if last_batch == "keep":
    batches = epoch_batches.keep_last_batches(ds, len(source), global_batch_size, pi, pc, _stack)
    return _finish_batches(batches, worker_count, read_ahead)
  return _finish(ds[pi::pc], local, True, worker_count, read_ahead)


def _finish_batches(ds: grain.MapDataset, worker_count: int, read_ahead: int
                    ) -> grain.IterDataset:
  it = ds.to_iter_dataset(read_options(read_ahead))
  if worker_count > 0:
    _allow_unparsed_absl_flags()
    it = it.mp_prefetch(grain.multiprocessing.MultiprocessingOptions(num_workers=worker_count))
  return it


class _Padded:
  """``source`` extended to ``length`` with padding records (label zeros of the right shape)."""

  def __init__(self, source, length: int):
    self.source, self.length = source, length
    self.pad_label = np.zeros_like(source[0]["label"]) if len(source) else 0

  def __len__(self):
    return self.length

  def __getitem__(self, index):
    if index < len(self.source):
      return self.source[index]
    return {"image": b"", "label": self.pad_label, "path": "<padding>", "padding": True}


def eval_dataset(source, *, global_batch_size: int, image_size: int = 224,
                 process_index: int | None = None, process_count: int | None = None,
                 worker_count: int = 0, read_ahead: int = -1) -> grain.IterDataset:
  """One pass in source order, padded to whole global batches; ``mask`` marks real examples."""
  pi, pc = _process(process_index, process_count)
  local = _local_batch_size(global_batch_size, pc)
  padded_len = math.ceil(len(source) / global_batch_size) * global_batch_size
  ds = grain.MapDataset.source(_Padded(source, padded_len))[pi::pc]
  return _finish(ds.map(transforms.EvalTransform(image_size)), local, False, worker_count,
                 read_ahead)


def to_global(batch: dict, mesh: jax.sharding.Mesh) -> dict:
  """Process-local NumPy batch -> global ``jax.Array``s sharded over the mesh's 'data' axis."""
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def _check_mesh(mesh, global_batch_size):
  n = mesh.shape["data"]
  if global_batch_size % n:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the {n} "
                     "devices of the mesh's 'data' axis")


def reading(data_cfg) -> dict:
  """How a run's ``config.data`` block asks every stream (train, eval, view encoding) to read:
  ``worker_count`` and ``read_ahead``, the keyword arguments of both datasets."""
  return dict(worker_count=data_cfg.workers, read_ahead=data_cfg.get("read_ahead", -1))


def train_options(data_cfg) -> dict:
  """The ``train_dataset`` keyword arguments a run's ``config.data`` block asks for: the one
  reading of those keys for every stream of the engine (a single run and a packed sweep)."""
  return dict(image_size=data_cfg.image_size, **reading(data_cfg),
              epoch_drop_last=data_cfg.get("epoch_drop_last", False),
              random_flip=data_cfg.get("random_flip", False),
              last_batch=data_cfg.get("last_batch", "drop"),
              resize_first=data_cfg.get("train_resize_first", False))


def make_train_iterator(source, *, mesh, global_batch_size: int, seed: int, **kwargs):
  """``train_dataset`` as a checkpointable iterator of global arrays (kwargs: see there)."""
  _check_mesh(mesh, epoch_batches.mesh_batch(len(source), global_batch_size,
                                             kwargs.get("last_batch", "drop")))
  ds = train_dataset(source, global_batch_size=global_batch_size, seed=seed, **kwargs)
  return iter(ds.map(functools.partial(to_global, mesh=mesh)))


def make_eval_iterator(source, *, mesh, global_batch_size: int, **kwargs):
  """``eval_dataset`` as an iterator of global arrays (kwargs: see there)."""
  _check_mesh(mesh, global_batch_size)
  ds = eval_dataset(source, global_batch_size=global_batch_size, **kwargs)
  return iter(ds.map(functools.partial(to_global, mesh=mesh)))
