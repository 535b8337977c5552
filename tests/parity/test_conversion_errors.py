"""Bad checkpoints: one clear error each, naming the key or file, and nothing written to --out."""

import json
import os
import pathlib
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

from convert import biomedclip as conv
from convert.openclip_config import ConversionError
from tests.parity import openclip_fixture as fx

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
  src, _ = fx.make_checkpoint(tmp_path_factory.mktemp("good"), "tiny", seed=2, hub_layout=False)
  return src


@pytest.fixture
def src(good, tmp_path):
  """A private copy of the good checkpoint directory, for one test to break."""
  shutil.copytree(good, tmp_path / "src")
  return tmp_path / "src"


def _state(src):
  return torch.load(src / "open_clip_pytorch_model.bin", weights_only=True)


def _save(src, sd):
  torch.save(sd, src / "open_clip_pytorch_model.bin")


def _convert_fails(src, tmp_path, match, **kw):
  out = tmp_path / "out"
  with pytest.raises(ConversionError, match=match):
    conv.convert(str(src), out, preset=kw.pop("preset", "tiny"), **kw)
  assert not out.exists()
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "temp dir left behind"


def test_missing_key(src, tmp_path):
  sd = _state(src)
  del sd["visual.trunk.blocks.1.mlp.fc2.bias"]
  _save(src, sd)
  _convert_fails(src, tmp_path, r"missing key 'visual\.trunk\.blocks\.1\.mlp\.fc2\.bias'")


def test_extra_key(src, tmp_path):
  sd = _state(src)
  sd["visual.trunk.blocks.7.attn.qkv.weight"] = torch.zeros(3, 3)
  _save(src, sd)
  _convert_fails(src, tmp_path, r"unexpected key 'visual\.trunk\.blocks\.7\.attn\.qkv\.weight'")


def test_ignored_keys_are_accepted_and_recorded(src, tmp_path):
  sd = _state(src)
  sd["text.transformer.embeddings.position_ids"] = torch.arange(256)[None]
  _save(src, sd)
  out = conv.convert(str(src), tmp_path / "out", preset="tiny")
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["ignored_keys"] == ["text.transformer.embeddings.position_ids"]


def test_shape_mismatch(src, tmp_path):
  sd = _state(src)
  sd["text.proj.0.weight"] = torch.zeros(7, 64)
  _save(src, sd)
  _convert_fails(src, tmp_path, r"shape mismatch for text\.proj\.0\.weight \(7, 64\)")


def test_truncated_bin(src, tmp_path):
  f = src / "open_clip_pytorch_model.bin"
  f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
  _convert_fails(src, tmp_path, r"open_clip_pytorch_model\.bin: not a readable PyTorch checkpoint")


def test_truncated_safetensors(src, tmp_path):
  from safetensors.torch import save_file
  save_file(_state(src), src / "open_clip_model.safetensors")
  f = src / "open_clip_model.safetensors"
  f.write_bytes(f.read_bytes()[:1000])
  _convert_fails(src, tmp_path, r"open_clip_model\.safetensors: not a readable safetensors file")


class _Exploit:
  """Unpickling this would create a marker file: the converter must refuse, not execute it."""
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


def test_pickle_with_code_is_refused_not_executed(src, tmp_path):
  marker = tmp_path / "executed"
  sd = dict(_state(src))
  sd["visual.trunk.norm.weight"] = _Exploit(str(marker))
  with open(src / "open_clip_pytorch_model.bin", "wb") as f:
    pickle.dump(sd, f)
  _convert_fails(src, tmp_path, r"(refused|not a readable).*")
  assert not marker.exists()


def test_non_tensor_value_is_refused(src, tmp_path):
  sd = _state(src)
  sd["logit_scale"] = "3.9"
  _save(src, sd)
  _convert_fails(src, tmp_path, r"key 'logit_scale' holds a str, not a tensor")


def test_wrong_config(src, tmp_path):
  cfg_file = src / "open_clip_config.json"
  cfg = json.loads(cfg_file.read_text())
  cfg["model_cfg"]["vision_cfg"]["timm_model_name"] = "resnet50"
  cfg_file.write_text(json.dumps(cfg))
  _convert_fails(src, tmp_path, r"timm_model_name='resnet50'", preset=None)
  cfg_file.write_text(json.dumps({"preprocess_cfg": {}}))
  _convert_fails(src, tmp_path, r"open_clip_config\.json: no 'model_cfg'", preset=None)


def test_config_of_another_size_is_an_architecture_error(src, tmp_path):
  # open_clip_config.json says ViT-B/16 + BERT-base, the weights are the tiny model.
  cfg_file = src / "open_clip_config.json"
  cfg = json.loads(cfg_file.read_text())
  cfg["model_cfg"]["vision_cfg"]["timm_model_name"] = "vit_base_patch16_224"
  cfg_file.write_text(json.dumps(cfg))
  _convert_fails(src, tmp_path, r"missing key .* more; the checkpoint does not match the "
                 r"configured architecture", preset=None)


def test_refuses_to_overwrite_and_force_keeps_old_on_failure(src, tmp_path):
  out = conv.convert(str(src), tmp_path / "out", preset="tiny")
  before = (out / "manifest.json").read_text()
  with pytest.raises(ConversionError, match="exists; pass --force"):
    conv.convert(str(src), out, preset="tiny")
  sd = _state(src)
  del sd["logit_scale"]
  _save(src, sd)
  with pytest.raises(ConversionError, match="missing key 'logit_scale'"):
    conv.convert(str(src), out, force=True, preset="tiny")
  assert (out / "manifest.json").read_text() == before


def _run_cli(*args, env=None):
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, **(env or {})}, timeout=300)


def test_safetensors_converts_without_torch(src, tmp_path):
  from safetensors.torch import save_file
  save_file(_state(src), src / "open_clip_model.safetensors")
  (src / "open_clip_pytorch_model.bin").unlink()
  code = ("import sys; sys.modules['torch'] = None; from convert.biomedclip import main; "
          f"sys.exit(main(['--src', {str(src)!r}, '--out', {str(tmp_path / 'out')!r}, "
          "'--preset', 'tiny']))")
  run = _run_cli("-c", code)
  assert run.returncode == 0, run.stderr
  assert (tmp_path / "out" / "params").is_dir()


def test_hub_offline_error_says_how_to_pass_a_local_path(tmp_path):
  run = _run_cli("-m", "convert.biomedclip", "--src",
                 "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
                 "--out", str(tmp_path / "out"), env={"HF_HUB_OFFLINE": "1"})
  assert run.returncode == 2
  assert "could not download hf-hub:microsoft/BiomedCLIP" in run.stderr
  assert "--src /path/to/dir" in run.stderr
  assert not (tmp_path / "out").exists()
