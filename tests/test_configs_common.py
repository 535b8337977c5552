"""configs/common.py: the config-string parser, the sweep packer and the dataset table."""

import json

import pytest

from configs import common

SPEC = dict(dataset="btmri", shots=16, seed=1, lr=0.002, runlocal=False, init=None)


def test_defaults_when_empty():
  for empty in (None, "", ",,"):
    cfg = common.parse_arg(empty, **SPEC)
    assert cfg.to_dict() == SPEC


def test_typed_values_and_bare_flag():
  cfg = common.parse_arg("dataset=busi,shots=4,lr=1e-3,runlocal,init=/a/b=c", **SPEC)
  assert cfg.dataset == "busi"
  assert cfg.shots == 4 and type(cfg.shots) is int
  assert cfg.lr == 0.001 and type(cfg.lr) is float
  assert cfg.runlocal is True
  assert cfg.init == "/a/b=c"  # Split at the first '=' only.
  assert cfg.seed == 1


@pytest.mark.parametrize("text,value", [("True", True), ("false", False), ("1", True),
                                        ("0", False)])
def test_strict_bools_accepted(text, value):
  assert common.parse_arg(f"runlocal={text}", **SPEC).runlocal is value


@pytest.mark.parametrize("text", ["yes", "no", "2", "", "on"])
def test_strict_bools_rejected(text):
  with pytest.raises(ValueError, match="runlocal"):
    common.parse_arg(f"runlocal={text}", **SPEC)


def test_unknown_key_is_named():
  with pytest.raises(KeyError, match="shot'"):
    common.parse_arg("shot=4", **SPEC)


def test_bad_int_names_key_and_value():
  with pytest.raises(ValueError, match=r"'shots'.*'4.5'"):
    common.parse_arg("shots=4.5", **SPEC)


def test_bare_non_bool_and_duplicate_are_errors():
  with pytest.raises(ValueError, match="shots"):
    common.parse_arg("shots", **SPEC)
  with pytest.raises(ValueError, match="twice"):
    common.parse_arg("seed=1,seed=2", **SPEC)


def test_arg_round_trips_through_parse_arg():
  kw = dict(dataset="kvasir", shots=2, seed=3, lr=0.0025, runlocal=True)
  packed = common.arg(**kw)
  assert packed == {"arg": "dataset=kvasir,shots=2,seed=3,lr=0.0025,runlocal=True"}
  assert common.parse_arg(packed["arg"], **SPEC).to_dict() == {**SPEC, **kw}


def test_arg_refuses_unpackable_values():
  with pytest.raises(ValueError, match="name"):
    common.arg(name="a,b")


def test_dataset_table_matches_split_files(shared_dir):
  """Class counts and names in the table agree with the published split files."""
  checked = 0
  for key, info in common.DATASETS.items():
    path = shared_dir / "data" / "biomedcoop" / "splits" / f"split_{info.name}.json"
    if not path.exists():
      continue  # OCTMNIST's split file is not published.
    splits = json.loads(path.read_text())
    labels = {item[1] for split in splits.values() for item in split}
    assert labels == set(range(info.num_classes)), key
    checked += 1
  assert checked == 10


def test_dataset_info_unknown_key():
  assert common.dataset_info("busi").num_classes == 3
  with pytest.raises(KeyError, match="btrmi"):
    common.dataset_info("btrmi")
