"""MedCLIP's released checkpoint -> ``CLIPConfig``: recognised by its state-dict keys, sized by its
tensor shapes.

The release (``pytorch_model.bin`` of ``medclip-vit`` or ``medclip-resnet``, unzipped as
CalibPrompt's ``MODEL_ROOT/medclip/pretrained/medclip-vit/``, docs/MODELS.md) is the
``state_dict`` of ``MedCLIPModel`` (CalibPrompt ``models/medclip/modeling_medclip.py:129-149``):
no config file travels with it, the architecture is fixed by ``constants.py`` (Swin-T,
Bio_ClinicalBERT) or by torchvision's resnet50. Both files have the same name; the reference picks
the vision class in code (``MedCLIPModel(vision_cls=...)``, line 131; ``from_pretrained`` defaults
the folder to ``medclip-resnet`` or ``medclip-vit`` by that class, lines 158-167) and loads
strictly, so only the matching class accepts a file. Here the keys decide the same way:
``vision_model.model.embeddings.patch_embeddings`` + ``vision_model.projection_head`` is the Swin
(MedCLIP-ViT), ``vision_model.model.conv1`` + ``vision_model.model.fc`` (no bias) the ResNet.

The sizes are read from the tensors: Swin's width and patch from the patch conv, stage depths from
the block indices, heads from the relative-position tables, the window from their length; the
ResNet's stem width from ``conv1``, blocks per stage from the ``layer{i}.{j}`` indices, the output
from ``fc``; BERT's vocabulary, width and depth from its tensors, its heads from a BERT
``config.json`` in the tokenizer folder (Bio_ClinicalBERT's) or width / 64 (every BERT size).

HF transformers 5 renamed Swin's attention and MLP keys; a state dict saved by it is renamed back
to the 4.x names the release uses (``legacy_names``; the table is HF's ``conversion_mapping.py``
"swin" entry, inverted), so one mapping serves both.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re

from biomedjax.models import config as model_config
from biomedjax.models.config import CLIPConfig, SwinConfig
from .openclip_config import ConversionError

SWIN = "vision_model.model"
BERT = "text_model.model"
MARKERS = (f"{SWIN}.embeddings.patch_embeddings.projection.weight",
           "text_model.projection_head.weight", "vision_model.projection_head.weight")
RESNET_MARKERS = (f"{SWIN}.conv1.weight", "text_model.projection_head.weight", f"{SWIN}.fc.weight")
# transformers 5.x Swin key fragment -> 4.x (the released MedCLIP's)
RENAMES = ((".attention.q_proj.", ".attention.self.query."),
           (".attention.k_proj.", ".attention.self.key."),
           (".attention.v_proj.", ".attention.self.value."),
           (".attention.relative_position_bias.relative_position_bias_table",
            ".attention.self.relative_position_bias_table"),
           (".attention.o_proj.", ".attention.output.dense."),
           (".mlp.fc1.", ".intermediate.dense."),
           (".mlp.fc2.", ".output.dense."))


def wants_state_dict(src_dir: pathlib.Path) -> bool:
  """True when the folder has no config naming the architecture (neither open_clip's nor an HF
  ``config.json``): then the weights themselves are inspected (a MedCLIP release)."""
  return not any((src_dir / n).is_file() for n in ("open_clip_config.json", "config.json"))


def arch_of(state_dict) -> str | None:
  """"swin" (MedCLIP-ViT), "resnet50" (MedCLIP-ResNet) or None (not a MedCLIP state dict)."""
  for arch, markers in (("swin", MARKERS), ("resnet50", RESNET_MARKERS)):
    if all(k in state_dict for k in markers):
      return arch
  return None


def legacy_names(state_dict: dict) -> dict:
  """transformers-5 Swin key names -> the 4.x names of the release; other keys unchanged."""
  out = {}
  for key, value in state_dict.items():
    if key.startswith(f"{SWIN}.encoder."):
      for new, old in RENAMES:
        key = key.replace(new, old)
    out[key] = value
  return out


def _bert_heads(width: int, tok_dir: pathlib.Path | None) -> int:
  cfg_file = tok_dir / "config.json" if tok_dir else None
  if cfg_file and cfg_file.is_file():
    raw = json.loads(cfg_file.read_text())
    if raw.get("model_type") == "bert" and raw.get("hidden_size") == width:
      return int(raw["num_attention_heads"])
  return max(1, width // 64)


def config_from_state_dict(state_dict: dict, where: str,
                           tok_dir: pathlib.Path | None = None) -> CLIPConfig:
  """The MedCLIP config (ViT or ResNet) the tensors describe; an error says what the folder
  lacks."""
  arch = arch_of(state_dict)
  if arch is None:
    raise ConversionError(
        f"{where}: no open_clip_config.json or HuggingFace CLIPModel config.json beside the "
        "weights, and the weights are not a MedCLIP checkpoint (keys "
        f"{', '.join(MARKERS)}, or {', '.join(RESNET_MARKERS)}); pass --preset or --model-config")
  sd = legacy_names(state_dict)
  if arch == "resnet50":
    vision, embed = _resnet(sd, where)
  else:
    vision, embed = _swin(sd, where)
  base = model_config.medclip()
  words = sd[f"{BERT}.embeddings.word_embeddings.weight"]
  width = int(words.shape[1])
  depth = len({int(m.group(1)) for k in sd
               if (m := re.match(rf"{re.escape(BERT)}\.encoder\.layer\.(\d+)\.", k))})
  text = dataclasses.replace(
      base.text, vocab_size=int(words.shape[0]), width=width, depth=depth,
      heads=_bert_heads(width, tok_dir),
      mlp_dim=int(sd[f"{BERT}.encoder.layer.0.intermediate.dense.weight"].shape[0]),
      max_positions=int(sd[f"{BERT}.embeddings.position_embeddings.weight"].shape[0]),
      type_vocab_size=int(sd[f"{BERT}.embeddings.token_type_embeddings.weight"].shape[0]))
  return dataclasses.replace(base, embed_dim=embed, vision=vision, text=text)


def _swin(sd: dict, where: str) -> tuple[SwinConfig, int]:
  """MedCLIP-ViT's tower from HF SwinModel's keys (4.x names) under ``vision_model.model``."""
  conv = sd[MARKERS[0]]
  embed_dim, patch = int(conv.shape[0]), int(conv.shape[-1])
  blocks = {}
  for key in sd:
    m = re.match(rf"{re.escape(SWIN)}\.encoder\.layers\.(\d+)\.blocks\.(\d+)\.", key)
    if m:
      blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
  stages = sorted(blocks)
  if stages != list(range(len(stages))) or not stages:
    raise ConversionError(f"{where}: Swin stages {stages} are not 0..n-1")
  depths = tuple(len(blocks[s]) for s in stages)
  tables = [sd[f"{SWIN}.encoder.layers.{s}.blocks.0.attention.self.relative_position_bias_table"]
            for s in stages]
  heads = tuple(int(t.shape[1]) for t in tables)
  window = (int(round(math.sqrt(tables[0].shape[0]))) + 1) // 2
  fc1 = sd[f"{SWIN}.encoder.layers.0.blocks.0.intermediate.dense.weight"]
  embed = int(sd["vision_model.projection_head.weight"].shape[0])
  return SwinConfig(image_size=model_config.medclip().vision.image_size,  # constants.py:7: 224
                    patch_size=patch, embed_dim=embed_dim, depths=depths, heads=heads,
                    window_size=window, mlp_ratio=float(fc1.shape[0]) / embed_dim), embed


def _resnet(sd: dict, where: str) -> tuple[SwinConfig, int]:
  """MedCLIP-ResNet's tower from torchvision resnet50's keys under ``vision_model.model``."""
  blocks = {}
  for key in sd:
    m = re.match(rf"{re.escape(SWIN)}\.layer(\d+)\.(\d+)\.", key)
    if m:
      blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
  if sorted(blocks) != [1, 2, 3, 4]:
    raise ConversionError(f"{where}: ResNet stages {sorted(blocks)} are not layer1..layer4")
  depths = tuple(len(blocks[i]) for i in (1, 2, 3, 4))
  vision = model_config.medclip_resnet().vision
  width = int(sd[RESNET_MARKERS[0]].shape[0])
  return (dataclasses.replace(vision, depths=depths, embed_dim=width),
          int(sd[RESNET_MARKERS[2]].shape[0]))
