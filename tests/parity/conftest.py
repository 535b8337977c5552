"""Parity tests need the PyTorch side (requirements-dev.txt); without it they skip, loudly."""

import pytest

for _mod in ("torch", "open_clip", "timm", "transformers"):
  pytest.importorskip(_mod, reason=f"{_mod} missing: pip install -r requirements-dev.txt")


def pytest_collection_modifyitems(items):
  for item in items:
    if "tests/parity" in str(item.fspath):
      item.add_marker(pytest.mark.parity)


@pytest.fixture(scope="session")
def full_checkpoint(tmp_path_factory):
  """Full-size BiomedCLIP with random weights, built once per test session and shared.

  Returns (open_clip checkpoint dir, torch model in eval mode, converted biomedjax dir). The
  conversion goes through the real CLI in a subprocess, as a user runs it.
  """
  import pathlib
  import subprocess
  import sys

  from tests.parity import openclip_fixture as fx
  src, torch_model = fx.make_checkpoint(tmp_path_factory.mktemp("full_src"), "biomedclip", seed=3)
  out = tmp_path_factory.mktemp("full_out") / "biomedclip"
  repo = pathlib.Path(__file__).resolve().parents[2]
  run = subprocess.run([sys.executable, "-m", "convert.biomedclip", "--src", str(src),
                        "--out", str(out)], cwd=repo, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  return src, torch_model, out


@pytest.fixture(scope="session")
def full_model(full_checkpoint):
  """The converted full-size model loaded with ``biomedjax.load`` (shared, read-only)."""
  import biomedjax
  return biomedjax.load(full_checkpoint[2])


@pytest.fixture(scope="session")
def full_side(full_checkpoint, full_model):
  """(torch model, open_clip tokenizer, Backbone, params) of the one shared full-size model:
  what the method parity tests compare, without building a 196M model per test."""
  from biomedjax.methods.base import Backbone
  from tests.parity import openclip_fixture as fx
  src, torch_model, _ = full_checkpoint
  return (torch_model, fx.openclip_tokenizer(src, 256),
          Backbone(full_model.module, full_model.tokenizer), full_model.params)
