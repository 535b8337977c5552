"""Where a run's numbers come from, written into results.json, results.md and the report.

A number from random weights must never pass for one from BiomedCLIP, and a number must be
traceable to the exact weights, data split and code that produced it. ``collect`` records:

* ``backbone``: the converted directory and the sha256 of its ``manifest.json`` (which itself
  holds the source checkpoint's sha256), or ``RANDOM <preset>``; ``label`` is the short text
  the report groups by;
* ``split_file`` and its sha256 (the few-shot selection is a function of it and the seed);
* ``method``: the method's options as configured;
* ``versions`` of the libraries that decide the numbers, and the git commit of this code when it
  runs from a checkout (``-dirty`` when it has uncommitted changes).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import pathlib
import subprocess

PACKAGES = ("biomedjax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy")
MANIFEST_FILE = "manifest.json"


def sha256(path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def backbone(model_cfg) -> dict:
  """``{"kind": "converted", "dir", "manifest_sha256", "source_model", "label"}`` or
  ``{"kind": "random", "preset", "label": "RANDOM <preset>"}``."""
  if not model_cfg.init:
    return {"kind": "random", "preset": model_cfg.preset,
            "label": f"RANDOM {model_cfg.preset}"}
  from biomedjax import hub
  path = (hub.resolve(model_cfg.init) if hub.is_hub(model_cfg.init)
          else pathlib.Path(model_cfg.init)).absolute()
  manifest = path / MANIFEST_FILE
  digest = sha256(manifest) if manifest.is_file() else None
  # the source's name (e.g. "MedCLIP-ViT", "PLIP"), from converters that record it
  model = (json.loads(manifest.read_text()).get("source_model") if digest else None)
  name = f"{model}: {path.name}" if model and model != path.name else path.name
  return {"kind": "converted", "dir": str(path), "manifest_sha256": digest, "source_model": model,
          "label": f"{name} ({digest[:12] if digest else 'no manifest'})"}


def is_random(results: dict) -> bool:
  return results.get("provenance", {}).get("backbone", {}).get("kind") == "random"


def backbone_label(results: dict) -> str:
  return results.get("provenance", {}).get("backbone", {}).get("label", "unknown backbone")


def versions() -> dict:
  out = {}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      if name == "biomedjax":
        import biomedjax
        out[name] = biomedjax.__version__
  return out


def git_commit() -> str | None:
  """HEAD of the checkout this package runs from, ``-dirty`` if modified; None elsewhere."""
  here = pathlib.Path(__file__).resolve().parent
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                          text=True, timeout=10)
    if head.returncode != 0:
      return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head.stdout.strip() + ("-dirty" if dirty else "")


def collect(config, split_file=None) -> dict:
  """The provenance block of results.json for a run of ``config``."""
  split = {"path": str(split_file), "sha256": sha256(split_file)} if split_file and pathlib.Path(
      split_file).is_file() else None
  method = config.method.to_dict() if hasattr(config.method, "to_dict") else dict(config.method)
  return {"backbone": backbone(config.model), "split_file": split, "method": method,
          "versions": versions(), "git_commit": git_commit()}


def markdown(prov: dict) -> str:
  """A few Markdown lines for results.md."""
  if not prov:
    return ""
  b = prov.get("backbone", {})
  lines = ["## Provenance\n"]
  if b.get("kind") == "random":
    lines.append(f"- backbone: **{b['label']}** (random weights: these numbers say nothing about "
                 "medical performance)")
  else:
    lines.append(f"- backbone: `{b.get('dir')}` (manifest sha256 `{b.get('manifest_sha256')}`)")
  split = prov.get("split_file")
  if split:
    lines.append(f"- split file: `{split['path']}` (sha256 `{split['sha256']}`)")
  options = ", ".join(f"{k}={v!r}" for k, v in sorted(prov.get("method", {}).items()))
  lines.append(f"- method options: {options}")
  lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in prov.get("versions", {}).items()))
  lines.append(f"- git commit: {prov.get('git_commit') or 'not a git checkout'}")
  return "\n".join(lines) + "\n"
