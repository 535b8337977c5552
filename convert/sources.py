"""Finding and reading the source checkpoint: local dir or file, or ``hf-hub:<repo id>``.

``.safetensors`` is read with numpy alone. ``.bin`` needs torch and is read with
``torch.load(weights_only=True)``, whose restricted unpickler refuses to construct arbitrary
objects: a pickle that would run code is rejected, never executed. Anything that is not a plain
name -> tensor mapping is refused too, naming the key.
"""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np

from .openclip_config import ConversionError

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin",  # open_clip
                "model.safetensors", "pytorch_model.bin")  # HuggingFace CLIPModel
HUB_PATTERNS = ["*.json", "*.txt", "*.txt.gz", *WEIGHT_FILES]


def download(repo_id: str) -> pathlib.Path:
  """Downloads the checkpoint files of ``hf-hub:<repo_id>`` into the HF cache."""
  try:
    from huggingface_hub import snapshot_download
    return pathlib.Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))
  except Exception as e:  # offline, unknown repo, auth: all end the same way for the user
    raise ConversionError(
        f"could not download hf-hub:{repo_id} ({type(e).__name__}: {e}). If this machine is "
        "offline, download open_clip_config.json, open_clip_pytorch_model.bin (or "
        ".safetensors), vocab.txt, tokenizer_config.json and special_tokens_map.json elsewhere "
        "and pass the local directory: --src /path/to/dir") from e


def locate(src: str) -> tuple[pathlib.Path, pathlib.Path]:
  """--src -> (weights file, directory holding the config and tokenizer files)."""
  if src.startswith("hf-hub:"):
    src = str(download(src[len("hf-hub:"):]))
  path = pathlib.Path(src)
  if path.is_file():
    return path, path.parent
  if not path.is_dir():
    raise ConversionError(f"--src {src}: no such file or directory")
  for name in WEIGHT_FILES:
    if (path / name).is_file():
      return path / name, path
  found = sorted(p.name for p in path.glob("*") if p.suffix in (".bin", ".safetensors"))
  if len(found) == 1:
    return path / found[0], path
  raise ConversionError(f"{path}: expected one of {WEIGHT_FILES} (found {found or 'no weights'})")


def sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      h.update(chunk)
  return h.hexdigest()


def read_state_dict(path: pathlib.Path) -> dict[str, np.ndarray]:
  """Weights file -> {torch key: numpy array} (floating tensors as float32)."""
  if path.suffix == ".safetensors":
    return _read_safetensors(path)
  if path.suffix in (".bin", ".pt", ".pth"):
    return _read_torch(path)
  raise ConversionError(f"{path}: unknown weights format {path.suffix!r} (.safetensors or .bin)")


def _read_safetensors(path):
  from safetensors.numpy import load_file
  try:
    sd = load_file(str(path))
  except Exception as e:
    raise ConversionError(f"{path}: not a readable safetensors file "
                          f"({type(e).__name__}: {e}); truncated download?") from e
  return dict(sd)


def _read_torch(path):
  try:
    import torch
  except ImportError as e:
    raise ConversionError(f"{path}: reading .bin needs torch (pip install -r requirements-dev.txt),"
                          " or convert from open_clip_model.safetensors") from e
  try:
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
  except Exception as e:
    kind = ("refused: the pickle holds objects other than tensors "
            if "weights_only" in str(e) or "Unsupported global" in str(e)
            else "not a readable PyTorch checkpoint (truncated or corrupt?) ")
    raise ConversionError(f"{path}: {kind}({type(e).__name__}: {str(e).splitlines()[0]})") from e
  if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
    obj = obj["state_dict"]  # an open_clip training checkpoint
  if not isinstance(obj, dict):
    raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a state dict")
  out = {}
  for key, value in obj.items():
    if not isinstance(value, torch.Tensor):
      raise ConversionError(f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor")
    key = key[len("module."):] if key.startswith("module.") else key  # DDP-saved checkpoints
    value = value.detach()
    out[key] = (value.to(torch.float32) if value.is_floating_point() else value).numpy()
  return out
