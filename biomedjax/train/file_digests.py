"""Sizes and SHA-256 digests of a directory's files: is a cache entry still what was written?

A cache entry that was complete when it was renamed into place can still be damaged later (a
disk error, a copy of the cache cut short, a file truncated by hand). Its ``meta.json`` records
each file's size and digest at write time; a reader checks them before trusting the entry.
"""

from __future__ import annotations

import pathlib

from biomedjax.tools.provenance import sha256 as _sha256


def digests(directory: pathlib.Path, skip: tuple[str, ...] = ()) -> dict[str, list]:
  """``{file name: [size in bytes, sha256 hex]}`` of ``directory``'s files (not ``skip``)."""
  out = {}
  for path in sorted(pathlib.Path(directory).iterdir()):
    if path.is_file() and path.name not in skip:
      out[path.name] = [path.stat().st_size, _sha256(path)]
  return out


def damage(directory: pathlib.Path, recorded: dict[str, list]) -> str | None:
  """What differs from ``recorded`` (a missing file, another size or digest), or None."""
  for name, (size, digest) in sorted(recorded.items()):
    path = pathlib.Path(directory) / name
    if not path.is_file():
      return f"{name} is missing"
    if path.stat().st_size != size:
      return f"{name} has {path.stat().st_size} bytes, {size} were written"
    if _sha256(path) != digest:
      return f"{name} does not have the content that was written (SHA-256 differs)"
  return None
