"""OpenAI-CLIP-family source configs -> ``CLIPConfig``: open_clip's native ``CLIP`` model config
(``open_clip_config.json`` of e.g. ``timm/vit_base_patch16_clip_224.openai``) and HuggingFace's
``CLIPModel`` ``config.json`` (e.g. PubMedCLIP). A setting this converter cannot represent is an
error naming the key; settings that do not change eval outputs (dropout) are accepted.
"""

from __future__ import annotations

import json
import math
import pathlib

from biomedjax.models import preprocess
from biomedjax.models.config import CLIPConfig, TextConfig, VisionConfig
from .openclip_config import ConversionError

# open_clip CLIPVisionCfg / CLIPTextCfg keys -> the values this converter supports (None: any).
_VISION_OK = {"layers": None, "width": None, "head_width": None, "mlp_ratio": None,
              "patch_size": None, "image_size": None, "patch_dropout": None,
              "ls_init_value": (None,), "attentional_pool": (False,), "no_ln_pre": (False,),
              "pos_embed_type": ("learnable",), "final_ln_after_pool": (False,),
              "pool_type": ("tok",), "output_tokens": (False,), "timm_model_name": (None,),
              "act_kwargs": (None, {}), "norm_kwargs": (None, {})}
_TEXT_OK = {"context_length": None, "vocab_size": None, "width": None, "heads": None,
            "layers": None, "mlp_ratio": None, "ls_init_value": (None,), "embed_cls": (False,),
            "pad_id": (0,), "no_causal_mask": (False,), "final_ln_after_pool": (False,),
            "pool_type": ("argmax",), "proj_bias": (False,), "proj_type": ("linear",),
            "output_tokens": (False,), "hf_model_name": (None,), "hf_tokenizer_name": (None, ""),
            "tokenizer_kwargs": (None, {}), "act_kwargs": (None, {}), "norm_kwargs": (None, {})}
_MODEL_OK = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text", "cast_dtype",
             "init_logit_scale", "init_logit_bias"}


def _check(cfg: dict, allowed: dict, where: str) -> None:
  for key, value in cfg.items():
    if key not in allowed:
      raise ConversionError(f"{where}.{key}={value!r}: not a setting of the OpenAI CLIP layout "
                            f"this converter supports (known: {sorted(allowed)})")
    if allowed[key] is not None and value not in allowed[key]:
      raise ConversionError(f"{where}.{key}={value!r} unsupported; expected one of "
                            f"{list(allowed[key])}")


def from_open_clip_native(model_cfg: dict, pre: dict, where: str) -> CLIPConfig:
  """open_clip ``CLIP``: QuickGELU iff ``quick_gelu`` is true, as open_clip builds it."""
  for key in model_cfg:
    if key not in _MODEL_OK:
      raise ConversionError(f"{where}: model_cfg.{key}={model_cfg[key]!r} unsupported")
  if model_cfg.get("custom_text"):
    raise ConversionError(f"{where}: model_cfg.custom_text=true without an HF text tower")
  if model_cfg.get("init_logit_bias") is not None:
    raise ConversionError(f"{where}: model_cfg.init_logit_bias set (SigLIP-style), unsupported")
  v, t = model_cfg["vision_cfg"], model_cfg["text_cfg"]
  _check(v, _VISION_OK, f"{where}: model_cfg.vision_cfg")
  _check(t, _TEXT_OK, f"{where}: model_cfg.text_cfg")
  layers = v.get("layers")
  resnet = isinstance(layers, (list, tuple))
  if not (isinstance(layers, int) or (resnet and len(layers) == 4)):
    raise ConversionError(f"{where}: model_cfg.vision_cfg.layers={layers!r}: expected a ViT "
                          "depth (an int) or 4 ResNet stage depths (e.g. [3, 4, 6, 3])")
  act = "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"
  width = int(v.get("width", 768))
  head_width = int(v.get("head_width", 64))
  if resnet:  # open_clip model.py _build_vision_tower: ModifiedResNet, heads = width * 32 // 64
    vision = VisionConfig(tower="modified_resnet", layers=tuple(int(n) for n in layers),
                          width=width, heads=width * 32 // head_width,
                          image_size=int(v.get("image_size", 224)))
  else:
    vision = _vit_config(v, width, head_width, act, where)
  tw = int(t.get("width", 512))
  context = int(t.get("context_length", 77))
  text = TextConfig(vocab_size=int(t.get("vocab_size", 49408)), width=tw,
                    depth=int(t.get("layers", 12)), heads=int(t.get("heads", 8)),
                    mlp_dim=int(tw * float(t.get("mlp_ratio", 4.0))), max_positions=context,
                    ln_eps=1e-5, act=act, pad_id=0, context_length=context, pool="eot",
                    proj="linear", hidden_dropout=0.0, attention_dropout=0.0)
  return CLIPConfig(family="openai", embed_dim=int(model_cfg["embed_dim"]), vision=vision,
                    text=text, image_mean=tuple(pre.get("mean", preprocess.OPENAI_MEAN)),
                    image_std=tuple(pre.get("std", preprocess.OPENAI_STD)),
                    init_logit_scale=float(model_cfg.get("init_logit_scale", math.log(1 / 0.07))))


def _vit_config(v: dict, width: int, head_width: int, act: str, where: str) -> VisionConfig:
  if width % head_width:
    raise ConversionError(f"{where}: model_cfg.vision_cfg.width={width} is not a multiple of "
                          f"head_width={head_width}")
  image_size, patch = int(v.get("image_size", 224)), int(v.get("patch_size", 16))
  if image_size % patch:
    raise ConversionError(f"{where}: model_cfg.vision_cfg.image_size={image_size} is not a "
                          f"multiple of patch_size={patch}")
  return VisionConfig(image_size=image_size, patch_size=patch, width=width,
                      depth=int(v["layers"]), heads=width // head_width,
                      mlp_dim=int(width * float(v.get("mlp_ratio", 4.0))), ln_eps=1e-5, act=act)


# HuggingFace defaults (``CLIPTextConfig`` / ``CLIPVisionConfig``): a saved config may omit them.
HF_TEXT_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                        num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
                        hidden_act="quick_gelu", layer_norm_eps=1e-5)
HF_VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
                          hidden_act="quick_gelu", layer_norm_eps=1e-5)
HF_ACTS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_new": "gelu_tanh",
           "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


def _hf_act(value, where):
  if value not in HF_ACTS:
    raise ConversionError(f"{where}={value!r} unsupported; expected one of {sorted(HF_ACTS)}")
  return HF_ACTS[value]


def from_hf_clip(config_file: pathlib.Path) -> CLIPConfig:
  """HF ``CLIPModel`` config.json (+ preprocessor_config.json beside it for mean/std)."""
  try:
    raw = json.loads(config_file.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise ConversionError(f"{config_file}: not readable JSON ({e})") from e
  if raw.get("model_type") != "clip":
    raise ConversionError(f"{config_file}: model_type={raw.get('model_type')!r}; only a "
                          "HuggingFace CLIPModel ('clip') is supported")
  # Configs saved by older transformers also carry ``*_config_dict``, which HF lets win.
  t = {**HF_TEXT_DEFAULTS, **(raw.get("text_config") or {}), **(raw.get("text_config_dict") or {})}
  v = {**HF_VISION_DEFAULTS, **(raw.get("vision_config") or {}),
       **(raw.get("vision_config_dict") or {})}
  if int(v["num_channels"]) != 3:
    raise ConversionError(f"{config_file}: vision_config.num_channels={v['num_channels']} != 3")
  if int(v["image_size"]) % int(v["patch_size"]):
    raise ConversionError(f"{config_file}: vision_config.image_size={v['image_size']} is not a "
                          f"multiple of patch_size={v['patch_size']}")
  vision = VisionConfig(image_size=int(v["image_size"]), patch_size=int(v["patch_size"]),
                        width=int(v["hidden_size"]), depth=int(v["num_hidden_layers"]),
                        heads=int(v["num_attention_heads"]), mlp_dim=int(v["intermediate_size"]),
                        ln_eps=float(v["layer_norm_eps"]),
                        act=_hf_act(v["hidden_act"], f"{config_file}: vision_config.hidden_act"))
  context = int(t["max_position_embeddings"])
  text = TextConfig(vocab_size=int(t["vocab_size"]), width=int(t["hidden_size"]),
                    depth=int(t["num_hidden_layers"]), heads=int(t["num_attention_heads"]),
                    mlp_dim=int(t["intermediate_size"]), max_positions=context,
                    ln_eps=float(t["layer_norm_eps"]),
                    act=_hf_act(t["hidden_act"], f"{config_file}: text_config.hidden_act"),
                    pad_id=0, context_length=context, pool="eot", proj="linear",
                    hidden_dropout=0.0, attention_dropout=0.0)
  pre_file = config_file.parent / "preprocessor_config.json"
  pre = json.loads(pre_file.read_text()) if pre_file.is_file() else {}
  return CLIPConfig(family="openai", embed_dim=int(raw.get("projection_dim", 512)),
                    vision=vision, text=text,
                    image_mean=tuple(pre.get("image_mean", preprocess.OPENAI_MEAN)),
                    image_std=tuple(pre.get("image_std", preprocess.OPENAI_STD)),
                    init_logit_scale=float(raw.get("logit_scale_init_value", math.log(1 / 0.07))))
