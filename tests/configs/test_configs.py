"""Every config file builds, names a registered method, locks, and its sweep points parse."""

import importlib
import pathlib

import pytest

from biomedjax.methods import METHODS

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
SHARED_MODULES = ("common", "base")
FILES = sorted(p.stem for p in CONFIG_DIR.glob("*.py")
               if p.stem not in SHARED_MODULES and not p.stem.startswith("_"))


@pytest.mark.parametrize("name", FILES)
def test_config_builds_and_names_a_method(name):
  module = importlib.import_module(f"configs.{name}")
  config = module.get_config()
  assert config.method.name in METHODS, f"configs/{name}.py names an unregistered method"
  config.lock()
  with pytest.raises(AttributeError):
    config.optim.lrr = 0.1  # a typo is an error, not a new key
  assert module.__doc__ and "launch.py --config configs/" in module.__doc__


@pytest.mark.parametrize("name", FILES)
def test_sweep_points_are_valid_configs(name):
  module = importlib.import_module(f"configs.{name}")
  points = []
  module.sweep(lambda **kw: points.append(kw["arg"]), None)
  assert points and len(set(points)) == len(points)
  for arg in points[:20]:
    assert module.get_config(arg).method.name in METHODS


@pytest.mark.parametrize("name", FILES)
def test_method_block_holds_every_option_of_the_method(name):
  """The block is generated from the method's options dataclass: every option is overridable
  on the command line under the locked config (e.g. zero-shot's n_prompts), defaults in one place."""
  import dataclasses
  config = importlib.import_module(f"configs.{name}").get_config()
  module = importlib.import_module(METHODS[config.method.name].__module__)
  fields = {f.name for f in dataclasses.fields(module.Options)}
  assert set(config.method) == fields | {"name"}
  config.lock()
  for field in fields:  # settable as --config.method.<field> would set it
    setattr(config.method, field, getattr(config.method, field))


def test_unknown_config_arg_is_an_error():
  from configs import coop
  with pytest.raises(KeyError, match="unknown config arg 'shot'"):
    coop.get_config("dataset=btmri,shot=4")
