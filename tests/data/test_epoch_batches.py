"""``data.last_batch="keep"``: per-epoch batches with the partial batch kept (the VR reference's
DataLoader without drop_last), process-count independence, checkpoint/resume, mesh choice."""

import jax
import numpy as np
import pytest

from biomedjax.data import epoch_batches, pipeline
from tests.data.conftest import IndexSource, resume_batches

SIZE = 8


def batches(n, gb, count, process_index=None, process_count=None, seed=0, **kw):
  it = iter(pipeline.train_dataset(IndexSource(n), global_batch_size=gb, seed=seed,
                                   image_size=SIZE, last_batch="keep",
                                   process_index=process_index, process_count=process_count,
                                   **kw))
  return [next(it) for _ in range(count)]


def test_every_epoch_is_a_fresh_shuffle_with_the_partial_batch_kept():
  """80 images at batch 64 -> 64 + 16 per epoch (Knee/LungColon at 16 shots)."""
  got = [b["label"].tolist() for b in batches(80, 64, 6)]
  assert [len(b) for b in got] == [64, 16] * 3
  epochs = [got[2 * e] + got[2 * e + 1] for e in range(3)]
  assert all(sorted(e) == list(range(80)) for e in epochs), "each epoch sees every image once"
  assert len({tuple(e) for e in epochs}) == 3, "reshuffled every epoch"
  assert epoch_batches.steps_per_epoch(80, 64, "keep") == 2
  assert epoch_batches.steps_per_epoch(80, 64, "drop") == 1
  assert epoch_batches.epoch_sizes(112, 64).tolist() == [64, 48]


@pytest.mark.parametrize("process_count", [2, 4])
def test_global_batches_do_not_depend_on_the_process_count(process_count):
  single = batches(20, 8, 6)
  per_process = [batches(20, 8, 6, p, process_count) for p in range(process_count)]
  for step, one in enumerate(single):
    rows = [per_process[p][step] for p in range(process_count)]
    for key in ("label", "image"):
      merged = np.empty_like(one[key])
      for p, r in enumerate(rows):
        merged[p::process_count] = r[key]  # process p holds rows p, p + P, ...
      np.testing.assert_array_equal(merged, one[key])


def test_the_augmentation_does_not_depend_on_the_mode():
  """Same seed: the first full batch is the same images with the same crops as "drop"."""
  keep = batches(20, 8, 1, random_flip=True)[0]
  drop = next(iter(pipeline.train_dataset(IndexSource(20), global_batch_size=8, seed=0,
                                          image_size=SIZE, random_flip=True)))
  np.testing.assert_array_equal(keep["label"], drop["label"])
  np.testing.assert_array_equal(keep["image"], drop["image"])


def test_checkpoint_state_resumes_mid_epoch(tmp_path):
  mesh = jax.make_mesh((4,), ("data",), devices=jax.devices()[:4])
  make = lambda: pipeline.make_train_iterator(IndexSource(20), mesh=mesh, global_batch_size=8,
                                              seed=1, image_size=SIZE, last_batch="keep")
  expected, resumed = resume_batches(make, 2, 4, tmp_path / "ckpt")
  assert [e["label"].shape[0] for e in expected] == [4, 8, 8, 4]
  for e, got in zip(expected, resumed):
    assert got["image"].sharding.spec == jax.sharding.PartitionSpec("data")
    for k in e:
      np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(e[k]))


def test_mesh_batch_and_errors():
  assert epoch_batches.mesh_batch(80, 64, "keep") == 16
  assert epoch_batches.mesh_batch(80, 64, "drop") == 64
  assert epoch_batches.mesh_batch(64, 64, "keep") == 64
  assert epoch_batches.mesh_batch(70, 64, "keep") == 2
  with pytest.raises(ValueError, match="last_batch='maybe'"):
    epoch_batches.check_last_batch("maybe")
  with pytest.raises(ValueError, match="contradicts config.data.epoch_drop_last"):
    epoch_batches.check_last_batch("keep", epoch_drop_last=True)
  with pytest.raises(ValueError, match="last batch of 6, which the 8 devices"):
    epoch_batches.check_devices(70, 64, "keep", 8, 2)
  epoch_batches.check_devices(70, 64, "keep", 8, 1)  # one host: the mesh shrinks instead
  with pytest.raises(ValueError, match=r"last batch of each epoch \(3 of 11"):
    batches(11, 4, 1, 0, 2)
