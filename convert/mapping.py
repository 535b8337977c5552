"""Declarative map from Flax parameter paths to open_clip state-dict keys, per tower.

Each Flax path gets the torch key(s) it is made of and the hook that turns them into its layout.
The converter checks coverage both ways: every Flax parameter is filled, every torch key is
consumed or listed in ``IGNORED`` with the reason it can be dropped.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from biomedjax.models.config import CLIPConfig
from convert import hooks

MAPPING_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Rule:
  keys: tuple[str, ...]
  hook: Callable = hooks.identity


def _linear(flax: str, torch: str, bias: bool = True) -> dict[str, Rule]:
  rules = {f"{flax}/kernel": Rule((f"{torch}.weight",), hooks.linear_t)}
  if bias:
    rules[f"{flax}/bias"] = Rule((f"{torch}.bias",))
  return rules


def _norm(flax: str, torch: str) -> dict[str, Rule]:
  return {f"{flax}/scale": Rule((f"{torch}.weight",)), f"{flax}/bias": Rule((f"{torch}.bias",))}


def vision_rules(cfg: CLIPConfig) -> dict[str, Rule]:
  """timm VisionTransformer under ``visual.trunk`` plus open_clip's ``visual.head.proj``."""
  v, t = cfg.vision, "visual.trunk"
  rules = {
      "visual/patch_embed/kernel": Rule((f"{t}.patch_embed.proj.weight",), hooks.conv_oihw_to_hwio),
      "visual/patch_embed/bias": Rule((f"{t}.patch_embed.proj.bias",)),
      "visual/cls_token": Rule((f"{t}.cls_token",)),
      "visual/pos_embed": Rule((f"{t}.pos_embed",)),
      **_norm("visual/norm", f"{t}.norm"),
      **_linear("visual/head_proj", "visual.head.proj", v.proj_bias),
  }
  for i in range(v.depth):
    f, b = f"visual/blocks_{i}", f"{t}.blocks.{i}"
    rules.update(_norm(f"{f}/norm1", f"{b}.norm1"))
    rules.update(_linear(f"{f}/attn/qkv", f"{b}.attn.qkv", v.qkv_bias))
    rules.update(_linear(f"{f}/attn/proj", f"{b}.attn.proj"))
    rules.update(_norm(f"{f}/norm2", f"{b}.norm2"))
    rules.update(_linear(f"{f}/mlp/fc1", f"{b}.mlp.fc1"))
    rules.update(_linear(f"{f}/mlp/fc2", f"{b}.mlp.fc2"))
  return rules


def text_rules(cfg: CLIPConfig) -> dict[str, Rule]:
  """HuggingFace BertModel under ``text.transformer`` plus open_clip's ``text.proj``."""
  e, tx = "text.transformer.embeddings", cfg.text
  rules = {
      "text/word_embeddings/embedding": Rule((f"{e}.word_embeddings.weight",)),
      "text/position_embeddings/embedding": Rule((f"{e}.position_embeddings.weight",)),
      "text/token_type_embeddings/embedding": Rule((f"{e}.token_type_embeddings.weight",)),
      **_norm("text/embed_norm", f"{e}.LayerNorm"),
  }
  for i in range(tx.depth):
    f, b = f"text/layer_{i}", f"text.transformer.encoder.layer.{i}"
    qkv = [f"{b}.attention.self.{n}" for n in ("query", "key", "value")]
    rules[f"{f}/attn/qkv/kernel"] = Rule(tuple(k + ".weight" for k in qkv), hooks.concat_linear_t)
    rules[f"{f}/attn/qkv/bias"] = Rule(tuple(k + ".bias" for k in qkv), hooks.concat)
    rules.update(_linear(f"{f}/attn/proj", f"{b}.attention.output.dense"))
    rules.update(_norm(f"{f}/attn_norm", f"{b}.attention.output.LayerNorm"))
    rules.update(_linear(f"{f}/mlp/fc1", f"{b}.intermediate.dense"))
    rules.update(_linear(f"{f}/mlp/fc2", f"{b}.output.dense"))
    rules.update(_norm(f"{f}/mlp_norm", f"{b}.output.LayerNorm"))
  if tx.proj == "mlp":
    rules.update(_linear("text/proj_0", "text.proj.0", tx.proj_bias))
    rules.update(_linear("text/proj_2", "text.proj.2", tx.proj_bias))
  else:
    rules.update(_linear("text/proj_0", "text.proj", tx.proj_bias))
  return rules


def clip_rules(cfg: CLIPConfig) -> dict[str, Rule]:
  return {**vision_rules(cfg), **text_rules(cfg), "logit_scale": Rule(("logit_scale",))}


# Keys that some checkpoints carry and the Flax model deliberately does not use.
IGNORED = {
    "text.transformer.embeddings.position_ids": "buffer 0..max_positions-1, recomputed",
    "text.transformer.embeddings.token_type_ids": "buffer of zeros, recomputed",
    "text.transformer.pooler.dense.weight": "BERT pooler, unused by open_clip's CLS pooling",
    "text.transformer.pooler.dense.bias": "BERT pooler, unused by open_clip's CLS pooling",
}
