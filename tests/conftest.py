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
# One cache for the session, its pytest-xdist workers and the launcher subprocesses (they inherit
# the environment); a size limit turns on JAX's file lock around cache writes.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="biomedjax_jit_cache_"))
try:
  import filelock  # noqa: F401  (JAX needs it for the lock; torch and huggingface_hub bring it)
except ImportError:
  pass
else:
  os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(16 << 30))
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
SPREAD_MODULES = {"test_method_contract.py"}  # many independent cases on cheap fixtures


def pytest_collection_modifyitems(items):
  """Work groups for pytest-xdist (``-n 2 --dist loadgroup``): every test of the one shared
  full-size model runs in the same worker, so the 196M model is built once; the tests of a
  module stay together, so its module-scoped runs (one finished run serving many assertions)
  are not repeated in the other worker."""
  for item in items:
    if FULL_SIZE_FIXTURES & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.xdist_group("full_size"))
    elif item.path.name not in SPREAD_MODULES:
      item.add_marker(pytest.mark.xdist_group(str(item.path.relative_to(REPO))))
