"""A persistent JAX compilation cache for every run, on by default.

Each run used to compile its programs afresh, and a sweep's hundreds of runs share a handful of
programs (the same backbone, method and shapes): with the cache, the first run of a program
compiles it and the others read it from disk (benchmarks/README.md, "Paper recipes").

``BIOMEDJAX_COMPILATION_CACHE``: unset -> ``$XDG_CACHE_HOME/biomedjax/jax`` (default
``~/.cache/biomedjax/jax``); a folder -> that folder; ``off`` (or ``0``, ``false``) -> no cache.
A ``JAX_COMPILATION_CACHE_DIR`` already in the environment (the test suite's, a user's) wins.
The settings go into the environment, so the runs a sweep starts inherit them. Programs that
compile in under ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` (0.5 s here, JAX's default 1 s)
are not stored; with ``filelock`` installed the cache is size-capped (LRU, 16 GiB) and JAX locks
it around writes, so concurrent array tasks can share it.
"""

from __future__ import annotations

import os
import pathlib
import sys

ENV = "BIOMEDJAX_COMPILATION_CACHE"
OFF = ("off", "0", "false", "no", "none")


def default_dir(environ=os.environ) -> pathlib.Path:
  base = environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "biomedjax" / "jax"


def configure(environ=os.environ) -> str | None:
  """Turns the cache on (unless switched off); returns its folder, or None when off."""
  if environ.get("JAX_COMPILATION_CACHE_DIR"):
    return environ["JAX_COMPILATION_CACHE_DIR"]
  setting = environ.get(ENV, "").strip()
  if setting.lower() in OFF:
    return None
  path = str(pathlib.Path(setting).expanduser() if setting else default_dir(environ))
  environ["JAX_COMPILATION_CACHE_DIR"] = path
  environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
  try:
    import filelock  # noqa: F401  (JAX locks a size-capped cache with it)
  except ImportError:
    pass
  else:
    environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(16 << 30))
  if "jax" in sys.modules and environ is os.environ:  # JAX read its environment already
    import jax
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
  return path
