"""Convert an open_clip or HuggingFace CLIP checkpoint into a biomedjax model directory.

  python -m convert --src hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 --out DIR
  python -m convert --src /path/to/downloaded/dir --out DIR [--force]
  (``python -m convert.biomedclip`` is the same command.)

The family comes from the source folder: ``open_clip_config.json`` with a timm vision tower and an
HF text tower is BiomedCLIP; one with open_clip's own towers is OpenAI CLIP (e.g. the folder of
``timm/vit_base_patch16_clip_224.openai``); a HuggingFace ``CLIPModel`` ``config.json`` (e.g.
PubMedCLIP, PLIP) is OpenAI CLIP in HF's key layout. A folder with neither holding MedCLIP's
``pytorch_model.bin`` (``medclip-vit`` or ``medclip-resnet``) is MedCLIP, its vision tower told by
its keys and sized from its tensors (``--tokenizer`` = the Bio_ClinicalBERT folder;
``convert/medclip_source.py``).

Everything is checked before anything is written: every source key is consumed or deliberately
ignored, every Flax parameter is filled, every shape matches. The output is written into a
temporary sibling directory and renamed into place, so ``--out`` is either complete or untouched.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shutil
import sys
import tempfile

import numpy as np

from biomedjax import pytree_paths
from biomedjax.models import biomedclip as bc
from biomedjax.models import config as model_config
from biomedjax.models.config import CLIPConfig
from . import mapping, medclip_source, sources, tokenizer_files
from .clip_config import from_hf_clip
from .openclip_config import ConversionError, from_open_clip


def _flat(tree, prefix=""):
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else k
    if isinstance(v, dict):
      yield from _flat(v, path)
    else:
      yield path, v


def layout_of(state_dict: dict, cfg: CLIPConfig) -> str:
  """"hf" for a HuggingFace CLIPModel state dict, "medclip" for MedCLIP, else "open_clip"."""
  if cfg.family == "medclip":
    return "medclip"
  hf = cfg.family == "openai" and any(k.startswith(("vision_model.", "text_model."))
                                      for k in state_dict)
  return "hf" if hf else "open_clip"


def map_state_dict(state_dict: dict[str, np.ndarray], cfg: CLIPConfig, source: str = "source",
                   layout: str | None = None):
  """torch state dict -> Flax params pytree; raises ConversionError naming the key at fault."""
  expected = dict(_flat(bc.abstract_params(cfg)))
  layout = layout or layout_of(state_dict, cfg)
  if layout == "medclip":
    state_dict = medclip_source.legacy_names(state_dict)
  rules = mapping.LAYOUTS[(cfg.family, layout)][0](cfg)
  ignored = mapping.ignored_keys(cfg, layout)
  unmapped = sorted(set(expected) - set(rules))
  if unmapped:  # a bug in mapping.py, not in the user's file
    raise ConversionError(f"Flax parameter(s) without a mapping rule: {unmapped[:5]}")
  consumed = {k for r in rules.values() for k in r.keys}
  missing = sorted(consumed - set(state_dict))
  if missing:
    raise ConversionError(f"{source}: missing key {missing[0]!r}"
                          + (f" (and {len(missing) - 1} more; the checkpoint does not match the "
                             "configured architecture)" if len(missing) > 1 else ""))
  extra = sorted(set(state_dict) - consumed - set(ignored))
  if extra:
    raise ConversionError(f"{source}: unexpected key {extra[0]!r}"
                          + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
                          + "; the checkpoint does not match the configured architecture")
  flat = {}
  for path, rule in rules.items():
    for k in rule.keys:
      if not np.issubdtype(state_dict[k].dtype, np.floating):
        raise ConversionError(f"{source}: key {k!r} has dtype {state_dict[k].dtype}, not float")
    value = np.asarray(rule.hook(*(state_dict[k] for k in rule.keys)), np.float32)
    want = tuple(expected[path].shape)
    if value.shape != want:
      shapes = ", ".join(f"{k} {tuple(state_dict[k].shape)}" for k in rule.keys)
      raise ConversionError(f"{source}: shape mismatch for {shapes} -> Flax {path}: "
                            f"got {value.shape}, the config needs {want}")
    flat[path] = value
  return pytree_paths.unflatten(flat)


def source_model(src: str, weights: pathlib.Path, cfg: CLIPConfig, name: str | None) -> str:
  """The name a report gives the source: ``--name``, else the hub id, else "MedCLIP-ViT" /
  "MedCLIP-ResNet" for a MedCLIP checkpoint, else ``<folder>/<weights file>``."""
  if name:
    return name
  if src.startswith("hf-hub:"):
    return src[len("hf-hub:"):]
  if cfg.family == "medclip":
    return f"MedCLIP-{'ViT' if cfg.vision.arch == 'swin' else 'ResNet'}"
  return f"{weights.parent.name}/{weights.name}"


def _count(tree) -> int:
  return int(sum(np.size(v) for _, v in _flat(tree)))


def _versions() -> dict:
  import importlib.metadata as md
  out = {}
  for pkg in ("biomedjax", "jax", "flax", "orbax-checkpoint", "numpy", "torch", "open_clip_torch"):
    try:
      out[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      pass
  import biomedjax
  out["biomedjax"] = biomedjax.__version__
  return out


def resolve_config(src_dir: pathlib.Path, preset: str | None, model_config_file: str | None):
  if model_config_file:
    try:
      return CLIPConfig.from_json(pathlib.Path(model_config_file).read_text())
    except (OSError, ValueError, TypeError) as e:
      raise ConversionError(f"--model-config {model_config_file}: {e}") from e
  if preset:
    if preset not in model_config.PRESETS:
      raise ConversionError(f"--preset {preset!r}: choose from {sorted(model_config.PRESETS)}")
    return model_config.PRESETS[preset]()
  config_file = src_dir / "open_clip_config.json"
  if config_file.is_file():
    return from_open_clip(config_file)
  hf_file = src_dir / "config.json"
  if hf_file.is_file():
    return from_hf_clip(hf_file)
  raise ConversionError(f"{config_file} not found (nor a HuggingFace CLIPModel config.json); it "
                        "names the architecture (or pass --preset)")


def convert(src: str, out: str | pathlib.Path, force: bool = False, preset: str | None = None,
            model_config_file: str | None = None, tokenizer_dir: str | None = None,
            name: str | None = None) -> pathlib.Path:
  out = pathlib.Path(out)
  if out.exists() and not force:
    raise ConversionError(f"--out {out} exists; pass --force to replace it")
  from . import pmcclip
  if pmcclip.is_source(src):  # PMC-CLIP's three .pth files: no config, no single weights file
    return pmcclip.convert(src, out, force, tokenizer_dir, preset, model_config_file, name)
  weights, src_dir = sources.locate(src)
  tok_dir = pathlib.Path(tokenizer_dir) if tokenizer_dir else src_dir
  state_dict = None
  if not (preset or model_config_file) and medclip_source.wants_state_dict(src_dir):
    state_dict = sources.read_state_dict(weights)  # no config file: the tensors say what it is
    cfg = medclip_source.config_from_state_dict(state_dict, str(src_dir), tok_dir)
  else:
    cfg = resolve_config(src_dir, preset, model_config_file)
  tok_source = tokenizer_files.check_source(tok_dir, cfg)
  if state_dict is None:
    state_dict = sources.read_state_dict(weights)
  layout = layout_of(state_dict, cfg)
  params = map_state_dict(state_dict, cfg, str(weights), layout)
  ignored = mapping.ignored_keys(cfg, layout)

  manifest = {
      "format": "biomedjax-clip", "mapping_version": mapping.MAPPING_VERSION,
      "family": cfg.family, "source_model": source_model(src, weights, cfg, name),
      "source_layout": layout, "tokenizer_source": tok_source,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "source": {"weights": str(weights), "sha256": sources.sha256(weights),
                 "tensors": len(state_dict)},
      "ignored_keys": sorted(set(state_dict) & set(ignored)),
      "parameters": {"visual": _count(params["visual"]), "text": _count(params["text"]),
                     "logit_scale": 1, "total": _count(params)},
      "versions": _versions(),
  }
  return write_model(out, cfg, tok_dir, params, manifest)


def write_model(out: pathlib.Path, cfg: CLIPConfig, tok_dir: pathlib.Path, params,
                manifest: dict) -> pathlib.Path:
  """Writes a converted directory atomically: staged in a sibling, renamed into place."""
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
  try:
    (tmp / bc.CONFIG_FILE).write_text(cfg.to_json())
    tokenizer_files.write(tok_dir, tmp / bc.TOKENIZER_DIR, cfg)
    bc.save_params(tmp / bc.PARAMS_DIR, params)
    (tmp / bc.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    make_readable(tmp)
    if out.exists():  # --force: keep the old one until the new one is in place
      old = out.with_name(f".{out.name}.old-{os.getpid()}")
      os.rename(out, old)
      os.rename(tmp, out)
      shutil.rmtree(old)
    else:
      os.rename(tmp, out)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp)
  return out


def make_readable(root: pathlib.Path) -> None:
  """Folders 0755 and files 0644 under ``root`` (itself included).

  ``tempfile.mkdtemp`` creates the staging folder owner-only (0700) and orbax writes with the
  process umask; a converted model is meant to be shared (a lab's common checkpoint folder), so
  it is opened to reading by everyone before the rename makes it visible.
  """
  root = pathlib.Path(root)
  root.chmod(0o755)
  for path in root.rglob("*"):
    path.chmod(0o755 if path.is_dir() else 0o644)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m convert", description=__doc__.split("\n\n")[0],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--src", required=True,
                  help="directory, weights file, or hf-hub:<repo id> of an open_clip checkpoint "
                  "or a HuggingFace CLIPModel")
  ap.add_argument("--out", required=True, help="directory to create")
  ap.add_argument("--force", action="store_true", help="replace --out if it exists")
  ap.add_argument("--preset", help="architecture preset instead of open_clip_config.json "
                  f"({', '.join(model_config.PRESETS)})")
  ap.add_argument("--model-config", help="a biomedjax config.json instead of open_clip_config.json")
  ap.add_argument("--tokenizer", help="directory of the tokenizer files (default: next to weights;"
                  " MedCLIP: the emilyalsentzer/Bio_ClinicalBERT folder)")
  ap.add_argument("--name", help="the model's name for reports, recorded in manifest.json as "
                  "source_model (default: the hub id, MedCLIP-ViT, or <folder>/<weights file>)")
  args = ap.parse_args(argv)
  try:
    out = convert(args.src, args.out, args.force, args.preset, args.model_config, args.tokenizer,
                  args.name)
  except (ConversionError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  manifest = bc.read_manifest(out)
  print(f"wrote {out} ({manifest['source_model']}): {manifest['parameters']['total']:,} parameters "
        f"(visual {manifest['parameters']['visual']:,}, text {manifest['parameters']['text']:,})")
  return 0


def cli() -> None:
  """Console script ``biomedjax-convert``."""
  sys.exit(main())


if __name__ == "__main__":
  cli()
