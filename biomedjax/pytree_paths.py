"""Nested dicts of arrays <-> flat {"a/b/c": array} maps: how parameter trees are named in files
(converted checkpoints' key checks, trained-state safetensors)."""

from __future__ import annotations


def unflatten(flat: dict, sep: str = "/") -> dict:
  """{"a/b": x, "a/c": y} -> {"a": {"b": x, "c": y}}."""
  tree = {}
  for path, v in flat.items():
    node = tree
    *parents, leaf = path.split(sep)
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree
