"""A method's config block -> its typed options, strictly.

Each method declares its hyperparameters as a frozen dataclass whose defaults are the reference's
values. Reading the block through it turns a misspelt key into an error naming the key and the
method, instead of a silently ignored setting that changes the experiment.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import ml_collections

SELECTOR_KEYS = ("name",)  # chooses the method (``config.method.name``); not an option


def read(cls, cfg: Mapping[str, Any] | None, method: str):
  """``cfg`` (an ml_collections ConfigDict, a dict or None) -> ``cls(**cfg)``."""
  values = {} if cfg is None else {k: v for k, v in cfg.items() if k not in SELECTOR_KEYS}
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f"config.method for {method!r}: unknown key(s) {unknown}; "
                     f"expected some of {sorted(known)}")
  return cls(**values)


def config_block(cls, name: str, **overrides):
  """``config.method`` for method ``name``: every field of ``cls`` with its default, then
  ``overrides``. Generated from the options dataclass, so defaults live in one place and every
  option can be set from the command line under the locked config."""
  values = {f.name: f.default for f in dataclasses.fields(cls)}
  unknown = sorted(set(overrides) - set(values))
  if unknown:
    raise ValueError(f"config for {name!r}: unknown option(s) {unknown}; {cls.__name__} has "
                     f"{sorted(values)}")
  return ml_collections.ConfigDict({"name": name, **values, **overrides})
