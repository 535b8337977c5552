"""Shared fixtures for the data tests: small synthetic trees written per test session."""

import io
import json
import pathlib

import numpy as np
import pytest
from PIL import Image


def write_png(path, seed=0, size=(12, 10)):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
  return path


def png_bytes(seed=0, size=(12, 10)):
  buf = io.BytesIO()
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "PNG")
  return buf.getvalue()


class IndexSource:
  """Records whose label is their index: lets a test see exactly which examples a batch holds."""

  def __init__(self, n, multi_hot=0):
    self.n, self.multi_hot, self.data = n, multi_hot, png_bytes(0, (8, 8))

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    label = i
    if self.multi_hot:
      label = np.array([(i >> b) & 1 for b in range(self.multi_hot)], np.float32)
    return {"image": self.data, "label": label, "path": f"img{i}"}


@pytest.fixture(scope="session")
def synthetic_tree(tmp_path_factory):
  from biomedjax.data import synthetic
  out = tmp_path_factory.mktemp("synthetic")
  split_file = synthetic.generate(out, num_classes=3, per_class=10, size=32)
  return out, split_file


def write_split(path, data):
  pathlib.Path(path).write_text(json.dumps(data, indent=4))
  return path


def resume_batches(make, skip: int, n: int, directory):
  """Takes ``skip`` batches from ``make()``, checkpoints the iterator with orbax, then returns
  (the next ``n`` batches of that iterator, the first ``n`` of a fresh ``make()`` restored from
  the checkpoint): what a resumed run would see against what the uninterrupted one saw."""
  import grain
  import orbax.checkpoint as ocp
  it = make()
  for _ in range(skip):
    next(it)
  with ocp.CheckpointManager(directory) as mngr:
    mngr.save(skip, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
  expected = [next(it) for _ in range(n)]
  restored = make()
  with ocp.CheckpointManager(directory) as mngr:
    mngr.restore(skip, args=ocp.args.Composite(
        data_iter=grain.checkpoint.CheckpointRestore(restored)))
  return expected, [next(restored) for _ in range(n)]
