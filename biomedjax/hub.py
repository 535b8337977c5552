"""Models by hub name: ``biomedjax.load("hf-hub:<id>")`` and ``model=hf-hub:<id>`` in a config.

The hub folder is fetched with ``huggingface_hub`` (its own cache), converted once by
``convert`` into ``$BIOMEDJAX_CACHE`` (default ``~/.cache/biomedjax/models``) under
``<org>--<name>-<hash>``, the hash being that of the source files' contents, and reused from
then on: a changed upload converts again, an unchanged one never does. Offline
(``HF_HUB_OFFLINE=1``, or no network) the hub cache is used; without it the latest converted copy
of that id; without either, one line says which files to fetch and where to put them.
``$BIOMEDJAX_HUB_MIRROR`` (a folder holding ``<org>/<name>/``) stands in for the hub: air-gapped
sites and the tests use it.
"""

from __future__ import annotations

import hashlib
import os
import pathlib

PREFIX = "hf-hub:"
# what a CLIP-family hub folder holds (convert/sources.py HUB_PATTERNS)
PATTERNS = ("*.json", "*.txt", "*.txt.gz", "*.safetensors", "*.bin")


def cache_root() -> pathlib.Path:
  default = pathlib.Path.home() / ".cache" / "biomedjax" / "models"
  return pathlib.Path(os.environ.get("BIOMEDJAX_CACHE") or default)


def is_hub(spec) -> bool:
  return isinstance(spec, str) and spec.startswith(PREFIX)


def _slug(repo_id: str) -> str:
  return repo_id.replace("/", "--")


def _source_files(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted({p for pattern in PATTERNS for p in folder.glob(pattern) if p.is_file()})


def source_hash(folder: pathlib.Path) -> str:
  """sha256 over the names and contents of the source files (what a conversion reads)."""
  h = hashlib.sha256()
  for path in _source_files(folder):
    h.update(path.name.encode() + b"\0")
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 22), b""):
        h.update(chunk)
  return h.hexdigest()


def _fetch(repo_id: str) -> pathlib.Path | None:
  """The local hub folder of ``repo_id``: the mirror's, else huggingface_hub's (downloading when
  online); None when neither has it."""
  mirror = os.environ.get("BIOMEDJAX_HUB_MIRROR")
  if mirror:
    folder = pathlib.Path(mirror) / repo_id
    return folder if folder.is_dir() else None
  try:
    from huggingface_hub import snapshot_download
  except ImportError:
    return None
  offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "")
  for local_only in ((True,) if offline else (False, True)):
    try:
      return pathlib.Path(snapshot_download(repo_id, allow_patterns=list(PATTERNS),
                                            local_files_only=local_only))
    except Exception:  # offline, unknown id, not cached: try the next way, then give up
      continue
  return None


def resolve(spec: str) -> pathlib.Path:
  """``hf-hub:<id>`` -> the converted folder in the cache (converting on first use)."""
  repo_id = spec[len(PREFIX):]
  root = cache_root()
  source = _fetch(repo_id)
  if source is None or not _source_files(source):
    cached = sorted(root.glob(f"{_slug(repo_id)}-*/config.json"), key=lambda p: p.stat().st_mtime)
    if cached:
      return cached[-1].parent
    raise FileNotFoundError(
        f"{spec}: not reachable and not converted yet; download its files ({', '.join(PATTERNS)}) "
        f"from https://huggingface.co/{repo_id} into $BIOMEDJAX_HUB_MIRROR/{repo_id}/ (or run "
        f"python -m convert --src <that folder> --out DIR and pass DIR)")
  out = root / f"{_slug(repo_id)}-{source_hash(source)[:16]}"
  if not (out / "config.json").is_file():
    from convert.biomedclip import convert  # torch only if the weights are a .bin
    root.mkdir(parents=True, exist_ok=True)
    convert(str(source), out, force=out.exists(), name=repo_id)
  return out
