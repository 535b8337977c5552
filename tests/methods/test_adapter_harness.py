"""The harness settings in the engine: split_seed, and classes with fewer than K images."""

import json

import pytest

from biomedjax.train import loop, setup
from configs import tip_adapter


@pytest.fixture(scope="module")
def btmri(shared_dir):
  images = shared_dir / "data" / "images" / "BTMRI"
  if not (images / "split_BTMRI.json").exists():
    pytest.skip("BTMRI sample absent")
  return images


def _data(btmri, tmp_path, seed, shots, **data):
  c = tip_adapter.get_config(f"dataset=btmri,shots={shots},seed={seed}")
  c.data.split_file = str(btmri / "split_BTMRI.json")
  c.data.image_root = str(btmri / "images")
  for k, v in data.items():
    c.data[k] = v
  return setup.build_data(c.data, c.seed, tmp_path), tmp_path / "fewshot_selection.json"


def _paths(selection_file):
  return [p for p, *_ in json.loads(selection_file.read_text())["train"]]


def test_every_run_draws_the_split_seed_images(btmri, tmp_path):
  _, s1 = _data(btmri, tmp_path / "a", seed=1, shots=2)
  _, s3 = _data(btmri, tmp_path / "b", seed=3, shots=2)
  _, own = _data(btmri, tmp_path / "c", seed=3, shots=2, split_seed=0)
  assert _paths(s1) == _paths(s3) and _paths(own) != _paths(s1)


def test_classes_below_k_are_named(btmri, tmp_path):
  data, _ = _data(btmri, tmp_path, seed=1, shots=25)  # the sample has 20 per class
  short = loop.short_classes(data, 25)
  assert short == {name: 20 for name in data.classnames}
  assert loop.short_classes(data, 20) == {}
