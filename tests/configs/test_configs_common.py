"""configs/common.py: the config-string parser, the sweep packer and the dataset grid."""

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


def test_fewshot_grid_covers_every_dataset_shot_and_seed():
  runs = []
  common.fewshot_grid(lambda **kw: runs.append(common.parse_arg(
      kw["arg"], dataset="", shots=0, seed=0, setting="").to_dict()), setting="few_shot")
  assert len(runs) == 11 * 5 * 3
  assert {(r["dataset"], r["shots"], r["seed"]) for r in runs} == {
      (d, k, s) for d in common.DATASETS for k in (1, 2, 4, 8, 16) for s in (1, 2, 3)}
  assert {r["setting"] for r in runs} == {"few_shot"}
