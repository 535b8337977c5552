"""Pipelines: determinism, process sharding, eval padding, global arrays, checkpointing."""

import collections

import jax
import numpy as np
import pytest

from biomedjax.data import pipeline
from tests.data.conftest import IndexSource, resume_batches

SIZE = 8  # tiny images keep these tests fast; the transforms are tested elsewhere


def labels_of(ds, n_batches):
  it = iter(ds)
  return [next(it)["label"].tolist() for _ in range(n_batches)]


def test_train_same_seed_same_batches():
  src = IndexSource(20)
  a = pipeline.train_dataset(src, global_batch_size=4, seed=3, image_size=SIZE)
  b = pipeline.train_dataset(src, global_batch_size=4, seed=3, image_size=SIZE)
  c = pipeline.train_dataset(src, global_batch_size=4, seed=4, image_size=SIZE)
  it_a, it_b = iter(a), iter(b)
  for x, y in ((next(it_a), next(it_b)) for _ in range(3)):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  assert labels_of(a, 5) != labels_of(c, 5)


@pytest.mark.parametrize("process_count", [1, 2, 4])
def test_train_epochs_are_permutations_and_shards_disjoint(process_count):
  n, gb = 24, 8
  per_process = [labels_of(pipeline.train_dataset(
      IndexSource(n), global_batch_size=gb, seed=0, image_size=SIZE, process_index=p,
      process_count=process_count), 2 * n // gb) for p in range(process_count)]
  for step in range(2 * n // gb):
    global_batch = sum((per_process[p][step] for p in range(process_count)), [])
    assert len(global_batch) == gb and len(set(global_batch)) == gb
  for epoch in range(2):
    steps = range(epoch * n // gb, (epoch + 1) * n // gb)
    seen = sorted(x for p in range(process_count) for s in steps for x in per_process[p][s])
    assert seen == list(range(n)), "each epoch covers every example exactly once"
  single = labels_of(pipeline.train_dataset(IndexSource(n), global_batch_size=gb, seed=0,
                                            image_size=SIZE), 2 * n // gb)
  for step in range(2 * n // gb):  # global batches do not depend on the process count
    assert sorted(sum((per_process[p][step] for p in range(process_count)), [])) == \
        sorted(single[step])


def test_epochs_are_reshuffled():
  ds = pipeline.train_dataset(IndexSource(12), global_batch_size=12, seed=0, image_size=SIZE)
  first, second = labels_of(ds, 2)
  assert sorted(first) == sorted(second) == list(range(12)) and first != second


@pytest.mark.parametrize("process_count", [1, 2, 4])
@pytest.mark.parametrize("n", [1, 16, 21])
def test_eval_every_example_exactly_once(process_count, n):
  gb = 8
  counts = collections.Counter()
  n_batches = set()
  for p in range(process_count):
    batches = list(pipeline.eval_dataset(IndexSource(n), global_batch_size=gb, image_size=SIZE,
                                         process_index=p, process_count=process_count))
    n_batches.add(len(batches))
    for b in batches:
      assert b["label"].shape == (gb // process_count,)
      counts.update(b["label"][b["mask"]].tolist())
      assert not b["image"][~b["mask"]].any()
  assert len(n_batches) == 1, "every process runs the same number of batches"
  assert counts == collections.Counter(range(n))


def test_multi_hot_labels():
  batch = next(iter(pipeline.eval_dataset(IndexSource(5, multi_hot=3), global_batch_size=8,
                                          image_size=SIZE)))
  assert batch["label"].dtype == np.float32 and batch["label"].shape == (8, 3)
  np.testing.assert_array_equal(batch["label"][:5], [[i >> b & 1 for b in range(3)]
                                                     for i in range(5)])
  assert batch["mask"].tolist() == [True] * 5 + [False] * 3
  train = next(iter(pipeline.train_dataset(IndexSource(5, multi_hot=3), global_batch_size=4,
                                           seed=0, image_size=SIZE)))
  assert train["label"].dtype == np.float32 and train["label"].shape == (4, 3)


def test_global_arrays_on_mesh():
  mesh = jax.make_mesh((8,), ("data",))
  it = pipeline.make_train_iterator(IndexSource(20), mesh=mesh, global_batch_size=16, seed=0,
                                    image_size=SIZE)
  batch = next(it)
  assert batch["image"].shape == (16, SIZE, SIZE, 3) and batch["image"].dtype == np.uint8
  assert batch["label"].dtype == np.int32 and batch["mask"].dtype == bool
  assert batch["image"].sharding.spec == jax.sharding.PartitionSpec("data")
  assert len(batch["image"].addressable_shards) == 8
  ev = list(pipeline.make_eval_iterator(IndexSource(20), mesh=mesh, global_batch_size=16,
                                        image_size=SIZE))
  assert [int(b["mask"].sum()) for b in ev] == [16, 4]
  with pytest.raises(ValueError, match="not divisible by the 8 devices"):
    pipeline.make_train_iterator(IndexSource(4), mesh=mesh, global_batch_size=12, seed=0)


def test_checkpoint_restore_reproduces_remaining_batches(tmp_path):
  mesh = jax.make_mesh((8,), ("data",))
  make = lambda: pipeline.make_train_iterator(IndexSource(30), mesh=mesh, global_batch_size=8,
                                              seed=1, image_size=SIZE)
  expected, resumed = resume_batches(make, 3, 4, tmp_path / "ckpt")
  for e, got in zip(expected, resumed):
    for k in e:
      np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(e[k]))


def test_worker_processes_give_the_same_batches():
  kwargs = dict(global_batch_size=4, seed=2, image_size=SIZE)
  expected = labels_of(pipeline.train_dataset(IndexSource(10), **kwargs), 4)
  assert labels_of(pipeline.train_dataset(IndexSource(10), worker_count=2, **kwargs), 4) == expected


def test_bad_arguments():
  with pytest.raises(ValueError, match="multiple of the process count 3"):
    pipeline.train_dataset(IndexSource(4), global_batch_size=4, seed=0, process_index=0,
                           process_count=3)
  with pytest.raises(ValueError, match="empty training source"):
    pipeline.train_dataset(IndexSource(0), global_batch_size=4, seed=0)


def test_epoch_drop_last_is_dasslike():
  """24 examples at batch 16: each step is a fresh epoch's random 16 (8 dropped per epoch)."""
  kw = dict(global_batch_size=16, seed=0, image_size=SIZE)
  steps = labels_of(pipeline.train_dataset(IndexSource(24), epoch_drop_last=True, **kw), 4)
  assert all(len(set(s)) == 16 for s in steps)
  assert len({tuple(sorted(s)) for s in steps}) == 4      # a different subset every epoch
  stream = labels_of(pipeline.train_dataset(IndexSource(24), **kw), 3)
  assert sorted(stream[0] + stream[1][:8]) == list(range(24))  # default: batches cross epochs
  same = labels_of(pipeline.train_dataset(IndexSource(32), epoch_drop_last=True, **kw), 2)
  assert same == labels_of(pipeline.train_dataset(IndexSource(32), **kw), 2)


class _CountingSource(IndexSource):
  """IndexSource that counts the records read (by any thread)."""

  def __init__(self, n):
    super().__init__(n)
    self.reads = 0

  def __getitem__(self, i):
    self.reads += 1
    return super().__getitem__(i)


def test_read_ahead_bounds_the_batches_decoded_ahead_and_not_the_batches():
  """grain's default buffer (500 elements) is 500 whole batches here; ``read_ahead`` bounds it,
  and no setting changes a batch."""
  import time
  kwargs = dict(global_batch_size=4, seed=5, image_size=SIZE)
  expected = [next(it) for it in [iter(pipeline.train_dataset(IndexSource(40), read_ahead=0,
                                                              **kwargs))] for _ in range(6)]
  for read_ahead in (-1, 1, 3):
    it = iter(pipeline.train_dataset(IndexSource(40), read_ahead=read_ahead, **kwargs))
    for e in expected:
      got = next(it)
      for k in e:
        np.testing.assert_array_equal(got[k], e[k])
  for read_ahead, most in ((0, 1), (2, 1 + 2 + 1)):  # + one batch a thread may be decoding
    source = _CountingSource(4000)
    it = iter(pipeline.train_dataset(source, read_ahead=read_ahead, **kwargs))
    next(it)
    time.sleep(1.0)  # time to run far ahead, as grain's default did
    assert source.reads <= most * 4, (read_ahead, source.reads)
  options = pipeline.read_options(-1)
  assert options.prefetch_buffer_size == 2 * options.num_threads
  assert 1 <= options.num_threads <= 16
  assert (pipeline.read_options(0).num_threads, pipeline.read_options(0).prefetch_buffer_size) \
      == (0, 0)
