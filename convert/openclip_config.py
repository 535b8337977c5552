"""open_clip's ``open_clip_config.json`` -> ``CLIPConfig``.

The vision tower is named by its timm model (sizes from timm's ViT table), the text tower by a
HuggingFace model: either a local directory with a BERT ``config.json`` or one of the hub ids
whose architecture is known here (the real BiomedCLIP checkpoint names the PubMedBERT hub id and
ships no BERT config). Anything this converter cannot represent is an error naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

from biomedjax.models.config import CLIPConfig, TextConfig, VisionConfig


class ConversionError(ValueError):
  """Bad or unsupported conversion input; the message names the file, key or value."""


# timm ViT sizes: name -> (width, depth, heads); MLP ratio 4.
TIMM_VIT_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12),
                  "large": (1024, 24, 16)}

# BERT-base hub ids whose config is the standard one (PubMedBERT / BiomedBERT, uncased).
KNOWN_BERT_BASE = ("microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                   "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract",
                   "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
                   "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext")


def vision_config(vcfg: dict, where: str) -> VisionConfig:
  name = vcfg.get("timm_model_name")
  m = re.fullmatch(r"vit_(tiny|small|base|large)_patch(\d+)_(\d+)", str(name))
  if not m:
    raise ConversionError(f"{where}: vision_cfg.timm_model_name={name!r} is not a supported timm "
                          f"ViT (vit_<{'|'.join(TIMM_VIT_SIZES)}>_patch<P>_<R>); pass --preset")
  width, depth, heads = TIMM_VIT_SIZES[m.group(1)]
  if vcfg.get("timm_pool", "") not in ("", "token"):
    raise ConversionError(f"{where}: vision_cfg.timm_pool={vcfg['timm_pool']!r} unsupported "
                          "(only the class token, '' or 'token')")
  if vcfg.get("timm_proj", "linear") != "linear":
    raise ConversionError(f"{where}: vision_cfg.timm_proj={vcfg['timm_proj']!r} unsupported "
                          "(only 'linear')")
  image_size = int(vcfg.get("image_size", m.group(3)))
  return VisionConfig(image_size=image_size, patch_size=int(m.group(2)), width=width,
                      depth=depth, heads=heads, mlp_dim=4 * width,
                      proj_bias=bool(vcfg.get("timm_proj_bias", False)))


def bert_config(hf_name: str, where: str) -> dict:
  """The HF BERT config for ``hf_name``: read from a local dir, or the known BERT-base one."""
  local = pathlib.Path(hf_name) / "config.json"
  if local.is_file():
    cfg = json.loads(local.read_text())
    if cfg.get("model_type") != "bert":
      raise ConversionError(f"{local}: model_type={cfg.get('model_type')!r}, only 'bert' supported")
    return cfg
  if hf_name in KNOWN_BERT_BASE:
    return dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                intermediate_size=3072, max_position_embeddings=512, type_vocab_size=2,
                layer_norm_eps=1e-12, hidden_act="gelu", pad_token_id=0)
  raise ConversionError(f"{where}: text_cfg.hf_model_name={hf_name!r} is neither a local directory "
                        "with a BERT config.json nor a known BERT-base hub id; pass --preset")


def text_config(tcfg: dict, where: str) -> TextConfig:
  for key, allowed in (("hf_pooler_type", ("cls_last_hidden_state_pooler",)),
                       ("hf_proj_type", ("mlp", "linear"))):
    if tcfg.get(key) not in allowed:
      raise ConversionError(f"{where}: text_cfg.{key}={tcfg.get(key)!r} unsupported; "
                            f"expected one of {allowed}")
  if "hf_model_name" not in tcfg:
    raise ConversionError(f"{where}: text_cfg.hf_model_name missing (only HF text towers)")
  b = bert_config(tcfg["hf_model_name"], where)
  act = b.get("hidden_act", "gelu")
  if act not in ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh"):
    raise ConversionError(f"{where}: BERT hidden_act={act!r} unsupported")
  return TextConfig(
      vocab_size=b["vocab_size"], width=b["hidden_size"], depth=b["num_hidden_layers"],
      heads=b["num_attention_heads"], mlp_dim=b["intermediate_size"],
      max_positions=b["max_position_embeddings"], type_vocab_size=b.get("type_vocab_size", 2),
      ln_eps=b.get("layer_norm_eps", 1e-12),
      act={"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}.get(act, act),
      pad_id=b.get("pad_token_id", 0), context_length=int(tcfg.get("context_length", 77)),
      proj=tcfg["hf_proj_type"], proj_bias=bool(tcfg.get("proj_bias", False)))


def family_of(model_cfg: dict, where: str) -> str:
  """The backbone family an open_clip model config describes, or an error naming the key.

  timm vision tower + HF text tower: BiomedCLIP's ``CustomTextCLIP``; neither: open_clip's own
  ``CLIP`` with OpenAI's layout (``ViT-B-16-quickgelu``).
  """
  timm = bool(model_cfg["vision_cfg"].get("timm_model_name"))
  hf = bool(model_cfg["text_cfg"].get("hf_model_name"))
  if timm and hf:
    return "biomedclip"
  if not timm and not hf:
    return "openai"
  key = "vision_cfg.timm_model_name" if timm else "text_cfg.hf_model_name"
  raise ConversionError(f"{where}: model_cfg.{key} is set but not its counterpart: a mixed "
                        "architecture is no supported family (biomedclip: timm ViT + HF BERT; "
                        "openai: open_clip's own ViT + causal text transformer)")


def from_open_clip(config_file: pathlib.Path) -> CLIPConfig:
  try:
    raw = json.loads(config_file.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise ConversionError(f"{config_file}: not readable JSON ({e})") from e
  model_cfg = raw.get("model_cfg")
  if not isinstance(model_cfg, dict):
    raise ConversionError(f"{config_file}: no 'model_cfg' object (not an open_clip config)")
  for key in ("embed_dim", "vision_cfg", "text_cfg"):
    if key not in model_cfg:
      raise ConversionError(f"{config_file}: model_cfg.{key} missing")
  pre = raw.get("preprocess_cfg", {})
  if family_of(model_cfg, str(config_file)) == "openai":
    from .clip_config import from_open_clip_native
    return from_open_clip_native(model_cfg, pre, str(config_file))
  base = CLIPConfig()
  return dataclasses.replace(
      base, embed_dim=int(model_cfg["embed_dim"]),
      vision=vision_config(model_cfg["vision_cfg"], str(config_file)),
      text=text_config(model_cfg["text_cfg"], str(config_file)),
      image_mean=tuple(pre.get("mean", base.image_mean)),
      image_std=tuple(pre.get("std", base.image_std)))
