"""Own data without tricks: a split file defines its classes under any dataset name, `prepare`
takes any name, a prepared folder alone is enough, and sweeps run only the grid the user named."""

import json
import pathlib
import subprocess
import sys

import ml_collections as mlc
import pytest

from biomedjax.data import prepare, sources, splits
from biomedjax.train import setup
from configs import common
from tests.data.conftest import write_png

REPO = pathlib.Path(__file__).resolve().parents[1]
CLASSES = ("benign tumor", "malignant tumor", "normal scan")  # BUSI's, not the default BTMRI's


@pytest.fixture(scope="module")
def own(tmp_path_factory):
  """A class-per-folder tree with a split file whose classes differ from every default."""
  tmp = tmp_path_factory.mktemp("own")
  items = []
  for label, name in enumerate(CLASSES):
    for i in range(4):
      write_png(tmp / "img" / name.replace(" ", "_") / f"{i}.png", seed=label * 10 + i)
      items.append(splits.Item(f"{name.replace(' ', '_')}/{i}.png", label, name))
  split_file = tmp / "mine.json"
  splits.write_split_file(split_file, {"train": items, "val": items[::2], "test": items[1::2]})
  return tmp, split_file


def _data_cfg(**kw):
  base = dict(dataset="btmri", root="data", split_file="", image_root="", prepared="", shots=2,
              setting="few_shot", skip_bad_images=False, synthetic={})
  return mlc.ConfigDict({**base, **kw})


def test_split_file_with_the_default_dataset_name_takes_its_classes(own, tmp_path):
  root, split_file = own
  data = setup.build_data(_data_cfg(split_file=str(split_file), image_root=str(root / "img")),
                          1, tmp_path)
  assert data.classnames == CLASSES and len(data.splits["train"]) == 6


def test_prepare_takes_own_data_under_a_catalog_name_and_the_folder_alone_is_enough(own,
                                                                                     tmp_path):
  root, split_file = own
  out = prepare.prepare("btmri", root / "img", tmp_path / "prepared", split_file=split_file)
  carried = splits.read_split_file(out / sources.PREPARED_SPLIT_FILE)
  assert [it.classname for it in carried["train"]][::4] == list(CLASSES)
  cfg = _data_cfg(dataset="anything", root="/nonexistent", prepared=str(out))
  data = setup.build_data(cfg, 1, tmp_path / "run")
  assert data.classnames == CLASSES
  assert len(data.splits["train"]) == 6 and len(data.splits["test"]) == 6


def test_sweep_grid_from_the_command():
  assert common.sweep_grid("datasets=btmri+busi,shots=1+4,seeds=1+2,model=m") == (
      "model=m", {"datasets": ("btmri", "busi"), "shots": (1, 4), "seeds": (1, 2)})
  with pytest.raises(ValueError, match="shots"):
    common.sweep_grid("shots=1+four")


def _sweep(*args):
  run = subprocess.run([sys.executable, "launch.py", *args, "--workdir=/tmp/never-written",
                        "--sweep=print"], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr
  return run.stdout.splitlines()


def test_sweep_print_honours_dataset_and_shots_and_names_no_other_data():
  lines = _sweep("--config=configs/coop.py:datasets=busi+btmri,shots=1+4,seeds=2,model=m")
  assert len(lines) == 4
  assert {l.split("configs/coop.py:")[1].split()[0] for l in lines} == {
      f"model=m,dataset={d},shots={k},seed=2" for d in ("busi", "btmri") for k in (1, 4)}
  own = _sweep("--config=configs/coop.py:dataset=mine,shots=4", "--config.data.split_file=/s.json",
               "--config.data.image_root=/img")
  assert len(own) == 3  # one data set, one K, the three seeds
  assert all("dataset=mine,shots=4" in l and "--config.data.split_file=/s.json" in l for l in own)
  own_default = _sweep("--config=configs/coop.py", "--config.data.split_file=/s.json",
                       "--config.data.image_root=/img")
  # No dataset named: the run is named for its split file (never the default catalog name).
  assert {l.split("dataset=")[1].split(",")[0] for l in own_default} == {"s"}


def test_a_grid_without_sweep_is_refused_in_one_line(tmp_path):
  run = subprocess.run([sys.executable, "launch.py", "--config=configs/coop.py:shots=1+4",
                        f"--workdir={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
  assert run.returncode == 2 and "--sweep" in run.stderr and len(run.stderr.splitlines()) == 1
