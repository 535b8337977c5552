"""Test-wide settings: CPU only, 8 simulated devices, exact fp32 matmuls, one compilation cache.

The device count must be fixed before JAX initialises its backends, hence the environment
variables at import time rather than in a fixture. The suite launches many short runs of the same
tiny programs (``launch.py`` in subprocesses, the same backbone in many modules); a persistent
compilation cache, fresh for each session and inherited by the subprocesses, compiles each once.
SIGKILL-and-resume of one process is checked in tests/test_multihost.py (both processes killed),
graceful interruption in tests/test_train.py.
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if os.environ.get("PYTEST_XDIST_WORKER"):  # one cache per worker process (they inherit the env)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(
      prefix=f"biomedjax_jit_cache_{os.environ['PYTEST_XDIST_WORKER']}_")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="biomedjax_jit_cache_"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import pathlib  # noqa: E402

import biomedjax  # noqa: E402,F401  (adds its XLA CPU flag before JAX starts)
import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
  """The reference material beside the repository; tests that need it skip when it is absent."""
  if not SHARED.is_dir():
    pytest.skip(f"{SHARED} is absent (reference material only exists in the development setup)")
  return SHARED


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
  """The tiny random-weight backbone, built once per session for the tests that share it
  (a module may still define its own ``tiny``, which then takes precedence there)."""
  from tests import tiny_backbone
  return tiny_backbone.make(tmp_path_factory.mktemp("shared_tiny_vocab"))


FULL_SIZE_FIXTURES = {"full_checkpoint", "full_model", "full_side"}


def pytest_collection_modifyitems(items):
  """With pytest-xdist (``-n 2 --dist loadgroup``), every test of the one shared full-size
  model runs in the same worker, so the 196M model is built once, not once per worker."""
  for item in items:
    if FULL_SIZE_FIXTURES & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.xdist_group("full_size"))
