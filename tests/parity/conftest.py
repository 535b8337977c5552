"""Parity tests need the PyTorch side (requirements-dev.txt); without it they skip, loudly."""

import pytest

for _mod in ("torch", "open_clip", "timm", "transformers"):
  pytest.importorskip(_mod, reason=f"{_mod} missing: pip install -r requirements-dev.txt")


def pytest_collection_modifyitems(items):
  for item in items:
    if "tests/parity" in str(item.fspath):
      item.add_marker(pytest.mark.parity)
