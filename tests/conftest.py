"""Test-wide settings: CPU only, 8 simulated devices, exact fp32 matmuls, one compilation cache.

The device count must be fixed before JAX initialises its backends, hence the environment
variables at import time rather than in a fixture. The suite launches many short runs of the same
tiny programs (``launch.py`` in subprocesses, the same backbone in many modules); a persistent
compilation cache, fresh for each session and inherited by the subprocesses, compiles each once.
SIGKILL-and-resume of one process is checked in tests/train/test_multihost.py (both processes
killed), graceful interruption in tests/train/test_train.py.
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One cache for the session, its pytest-xdist workers and the launcher subprocesses (they inherit
# the environment); a size limit turns on JAX's file lock around cache writes.
# The process that creates it (pytest; its xdist workers inherit it) removes it at the end.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="biomedjax_jit_cache_")
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
import shutil  # noqa: E402

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


def pytest_unconfigure(config):
  if _OWN_CACHE:
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


FULL_SIZE_FIXTURES = {"full_checkpoint", "full_model", "full_side"}
SPREAD_MODULES = {"test_method_contract.py"}  # many independent cases on cheap fixtures
# Work groups that take minutes, costliest first (measured with --durations=0 on 2 cores): xdist
# hands groups out in collection order, so these start first and the cheap ones fill in behind
# them on whichever worker is free (one long group started last would leave the other worker idle).
FIRST = ("tests/evaluation/test_calib_study.py", "tests/train/test_train.py", "full_size",
         "tests/train/test_tower_state.py", "tests/faults/test_faults.py",
         "tests/test_vr_e2e.py", "tests/tools/test_journey.py", "tests/test_vr_natural.py",
         "tests/train/test_packed.py", "tests/studies/test_iuxray_study.py",
         "tests/train/test_engine_families.py")


def _group(item) -> str | None:
  if FULL_SIZE_FIXTURES & set(getattr(item, "fixturenames", ())):
    return "full_size"
  if item.path.name in SPREAD_MODULES:
    return None
  return str(item.path.relative_to(REPO))


def _rank(group: str | None) -> int:
  if group is None:
    return len(FIRST) + 1  # the spread cases last: short, they even out the two workers' ends
  return FIRST.index(group) if group in FIRST else len(FIRST)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
  """Work groups for pytest-xdist (``-n 2 --dist loadgroup``): every test of the one shared
  full-size model runs in the same worker, so the 196M model is built once; the tests of a
  module stay together, so its module-scoped runs (one finished run serving many assertions)
  are not repeated in the other worker. The costliest groups come first (``FIRST``)."""
  rank = {}
  for item in items:
    group = _group(item)
    if group is not None:
      item.add_marker(pytest.mark.xdist_group(group))
    rank[item.path] = min(rank.get(item.path, len(FIRST) + 1), _rank(group))
  items.sort(key=lambda item: rank[item.path])  # stable: a module's tests stay together, in order


def pytest_configure(config):
  # Groups in collection order (costliest first), not xdist's default of most tests first.
  if getattr(config.option, "dist", None) == "loadgroup":
    config.option.loadscopereorder = False


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker sends the collected ids
def pytest_collection_finish(session):
  """pytest-xdist 3.8 marks an item's group by appending '@group' to ``item._nodeid``; pytest 9.2
  reads the node id from ``item._id`` instead, so without this the groups never reach the
  scheduler and each module's fixtures are built again in the other worker."""
  for item in session.items:
    grouped = getattr(item, "_nodeid", None)
    if grouped and grouped != item.nodeid and hasattr(item, "_id"):
      item._id = type(item._id).parse(grouped)
