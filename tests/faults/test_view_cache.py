"""A damaged view-cache entry (``biomedjax/train/view_stream.py``) is noticed and encoded again,
not trained on: a file cut short (a full disk, an interrupted copy of the cache) or one whose
bytes changed (a disk error) no longer matches the digests recorded when it was written."""

import logging

import ml_collections as mlc
import numpy as np
import pytest

from biomedjax.train import view_stream

FEATURES = np.arange(48, dtype=np.float32).reshape(4, 12)
LABELS = np.arange(4)


def _damage_cut(path):
  path.write_bytes(path.read_bytes()[:-16])


def _damage_flip(path):
  data = bytearray(path.read_bytes())
  data[-3] ^= 0xFF  # same size, another value
  path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, damage", [(view_stream.FEATURES_FILE, _damage_cut),
                                          (view_stream.FEATURES_FILE, _damage_flip),
                                          (view_stream.LABELS_FILE, _damage_flip)])
def test_a_damaged_entry_is_encoded_again(tmp_path, caplog, name, damage):
  config = mlc.ConfigDict({"data": {"view_cache": str(tmp_path)}})
  builds = []

  def build(out):
    builds.append(out)
    np.save(out / view_stream.FEATURES_FILE, FEATURES)
    np.save(out / view_stream.LABELS_FILE, LABELS)

  entry = view_stream._cached(config, "key", {}, build)
  assert view_stream._cached(config, "key", {}, build) == entry and len(builds) == 1  # a hit
  damage(entry / name)
  with caplog.at_level(logging.WARNING, logger="biomedjax"):
    entry = view_stream._cached(config, "key", {}, build)
  assert len(builds) == 2, "the damaged entry was read as it was"
  assert f"view cache entry {entry} is damaged ({name}" in caplog.text
  np.testing.assert_array_equal(np.load(entry / view_stream.FEATURES_FILE), FEATURES)
  np.testing.assert_array_equal(np.load(entry / view_stream.LABELS_FILE), LABELS)
  assert [p.name for p in tmp_path.iterdir()] == ["key"]  # nothing left behind
