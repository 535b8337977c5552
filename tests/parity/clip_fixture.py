"""Builds OpenAI-CLIP-family checkpoints offline, with random weights, in their published layouts.

* open_clip ``CLIP`` (``ViT-B-16-quickgelu`` or a tiny model of the same layout), saved like the
  hub folder ``timm/vit_base_patch16_clip_224.openai``: ``open_clip_config.json`` +
  ``open_clip_pytorch_model.bin`` (or ``open_clip_model.safetensors``).
* HuggingFace ``CLIPModel`` (patch 32, as PubMedCLIP), saved by ``save_pretrained`` with the
  ``CLIPTokenizer`` files (``vocab.json``, ``merges.txt``) made from open_clip's BPE file.

Every tensor is perturbed, so no parameter keeps a default (LayerNorm ones, zero biases) that a
wrong mapping could hide behind.
"""

from __future__ import annotations

import gzip
import json
import pathlib

import numpy as np
import open_clip
import torch

from biomedjax.models import bpe
from biomedjax.models import config as model_config

OPENCLIP_BPE = pathlib.Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"


def perturb_(model: torch.nn.Module, seed: int, logit_scale: float = 3.9) -> None:
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for _, p in model.named_parameters():
      scale = 0.1 if p.ndim <= 1 else 0.02
      p.add_(torch.randn(p.shape, generator=g) * scale)
    model.logit_scale.fill_(logit_scale)  # not the init, so a missed mapping shows


def openclip_model_cfg(preset: str) -> dict:
  """open_clip's model config for a biomedjax OpenAI-family preset (the real JSON at full size)."""
  if preset == "clip_vit_b16":
    path = pathlib.Path(open_clip.__file__).parent / "model_configs" / "ViT-B-16-quickgelu.json"
    return json.loads(path.read_text())
  if preset in ("clip_rn50", "clip_rn50_quickgelu"):
    name = "RN50-quickgelu.json" if preset.endswith("quickgelu") else "RN50.json"
    return json.loads((pathlib.Path(open_clip.__file__).parent / "model_configs" / name).read_text())
  c = model_config.PRESETS[preset]()
  v, t = c.vision, c.text
  if v.tower == "modified_resnet":  # open_clip: heads = width * 32 // head_width
    return {"embed_dim": c.embed_dim, "quick_gelu": True,
            "vision_cfg": {"image_size": v.image_size, "layers": list(v.layers),
                           "width": v.width, "head_width": v.width * 32 // v.heads},
            "text_cfg": {"context_length": t.context_length, "vocab_size": t.vocab_size,
                         "width": t.width, "heads": t.heads, "layers": t.depth,
                         "mlp_ratio": t.mlp_dim / t.width}}
  return {"embed_dim": c.embed_dim, "quick_gelu": True,
          "vision_cfg": {"image_size": v.image_size, "layers": v.depth, "width": v.width,
                         "head_width": v.width // v.heads, "patch_size": v.patch_size,
                         "mlp_ratio": v.mlp_dim / v.width},
          "text_cfg": {"context_length": t.context_length, "vocab_size": t.vocab_size,
                       "width": t.width, "heads": t.heads, "layers": t.depth,
                       "mlp_ratio": t.mlp_dim / t.width}}


def make_openclip_checkpoint(out: pathlib.Path, preset: str = "tiny_clip", seed: int = 0,
                             safetensors: bool = False, bpe_in_folder: bool = False):
  """Writes an open_clip CLIP checkpoint folder; returns it and the (eval-mode) torch model.

  ``bpe_in_folder``: also put open_clip's merges file there (else the converter must take it
  from the installed open_clip package).
  """
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  model_cfg = openclip_model_cfg(preset)
  torch.manual_seed(seed)
  model = open_clip.model.CLIP(**{k: v for k, v in model_cfg.items()})
  perturb_(model, seed)
  model.eval()
  c = model_config.PRESETS[preset]()
  if safetensors:
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out / "open_clip_model.safetensors"))
  else:
    torch.save(model.state_dict(), out / "open_clip_pytorch_model.bin")
  (out / "open_clip_config.json").write_text(json.dumps({
      "model_cfg": model_cfg,
      "preprocess_cfg": {"mean": list(c.image_mean), "std": list(c.image_std)}}, indent=2))
  if bpe_in_folder:
    (out / OPENCLIP_BPE.name).write_bytes(OPENCLIP_BPE.read_bytes())
  return out, model


def write_hf_tokenizer_files(out: pathlib.Path) -> None:
  """CLIPTokenizer's files from open_clip's merges: same ids, HF's special-token names."""
  lines = gzip.open(OPENCLIP_BPE).read().decode("utf-8").split("\n")
  merges = lines[1:bpe.OPENCLIP_NUM_MERGES + 1]
  base = list(bpe.bytes_to_unicode().values())
  vocab = base + [v + "</w>" for v in base] + ["".join(m.split()) for m in merges]
  vocab += ["<|startoftext|>", "<|endoftext|>"]
  (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)},
                                             ensure_ascii=False), encoding="utf-8")
  (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
  (out / "special_tokens_map.json").write_text(json.dumps(
      {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
       "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
  (out / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
       "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
       "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))


def make_hf_checkpoint(out: pathlib.Path, seed: int = 0):
  """A tiny HF CLIPModel, patch 32 (PubMedCLIP's layout): image 64, widths 32/48, 2 layers."""
  from transformers import CLIPConfig, CLIPModel
  out = pathlib.Path(out)
  cfg = CLIPConfig(
      text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                       hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=49406,
                       eos_token_id=49407, pad_token_id=49407),
      vision_config=dict(hidden_size=48, intermediate_size=192, num_hidden_layers=2,
                         num_attention_heads=2, image_size=64, patch_size=32,
                         hidden_act="quick_gelu", layer_norm_eps=1e-5),
      projection_dim=24)
  torch.manual_seed(seed)
  model = CLIPModel(cfg)
  perturb_(model, seed, logit_scale=4.2)
  model.eval()
  model.save_pretrained(str(out), safe_serialization=True)
  write_hf_tokenizer_files(out)
  return out, model


def features(out) -> torch.Tensor:
  """HF v5 returns an output object from get_*_features; older versions a tensor."""
  return out.pooler_output if hasattr(out, "pooler_output") else out


def encode_all(m, pixels, ids, mask):
  """(image features, text features, logits) of a loaded model in ONE compiled pass: logits as
  ``CLIP.__call__`` forms them (the module's ``scale()``, with a family's clamp), so a full-size
  parity test compiles each tower once instead of once per entry point."""
  import jax
  from biomedjax.models.clip import CLIP, l2_normalize, variables

  def run(module: CLIP, px, t, k):
    img, txt = module.encode_image(px), module.encode_text(t, k)
    return img, txt, module.scale() * l2_normalize(img) @ l2_normalize(txt).T

  out = jax.jit(lambda p, *a: m.module.apply(variables(p), *a, method=run))(  # + batch_stats
      m.params, pixels, ids, mask.astype(bool))
  return tuple(map(np.asarray, out))
