"""Declarative map from Flax parameter paths to PyTorch state-dict keys, per family and layout.

Each Flax path gets the torch key(s) it is made of and the hook that turns them into its layout.
The converter checks coverage both ways: every Flax parameter is filled, every torch key is
consumed or listed in the layout's ignored keys with the reason it can be dropped.

Layouts (``LAYOUTS``): ``("biomedclip", "open_clip")``: open_clip ``CustomTextCLIP`` (timm ViT +
HF BERT); ``("openai", "open_clip")``: open_clip ``CLIP`` (OpenAI's own key names);
``("openai", "hf")``: HuggingFace ``CLIPModel`` (separate q/k/v, ``nn.Linear`` projections).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from biomedjax.models.config import CLIPConfig
from . import hooks

MAPPING_VERSION = 3  # 2: the OpenAI CLIP layouts; 3: MedCLIP (ViT and ResNet)


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


def bert_rules(depth: int, t: str) -> dict[str, Rule]:
  """A HuggingFace BertModel under the torch prefix ``t`` -> ``bert.TextTransformer``'s encoder."""
  e = f"{t}.embeddings"
  rules = {
      "text/word_embeddings/embedding": Rule((f"{e}.word_embeddings.weight",)),
      "text/position_embeddings/embedding": Rule((f"{e}.position_embeddings.weight",)),
      "text/token_type_embeddings/embedding": Rule((f"{e}.token_type_embeddings.weight",)),
      **_norm("text/embed_norm", f"{e}.LayerNorm"),
  }
  for i in range(depth):
    f, b = f"text/layer_{i}", f"{t}.encoder.layer.{i}"
    qkv = [f"{b}.attention.self.{n}" for n in ("query", "key", "value")]
    rules[f"{f}/attn/qkv/kernel"] = Rule(tuple(k + ".weight" for k in qkv), hooks.concat_linear_t)
    rules[f"{f}/attn/qkv/bias"] = Rule(tuple(k + ".bias" for k in qkv), hooks.concat)
    rules.update(_linear(f"{f}/attn/proj", f"{b}.attention.output.dense"))
    rules.update(_norm(f"{f}/attn_norm", f"{b}.attention.output.LayerNorm"))
    rules.update(_linear(f"{f}/mlp/fc1", f"{b}.intermediate.dense"))
    rules.update(_linear(f"{f}/mlp/fc2", f"{b}.output.dense"))
    rules.update(_norm(f"{f}/mlp_norm", f"{b}.output.LayerNorm"))
  return rules


def text_rules(cfg: CLIPConfig, bert: str = "text.transformer") -> dict[str, Rule]:
  """HuggingFace BertModel under ``bert`` plus the text head of ``cfg.text.proj``: open_clip's
  ``text.proj`` ("mlp" / "linear"), or BERT's pooler + ``text_projection`` ("pooler")."""
  tx = cfg.text
  rules = bert_rules(tx.depth, bert)
  if tx.proj == "pooler":  # pooler_output @ text_projection (a bare (width, embed) tensor)
    rules.update(_linear("text/pooler", f"{bert}.pooler.dense"))
    rules["text/proj_0/kernel"] = Rule(("text_projection",))
  elif tx.proj == "mlp":
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


# -- ResNet towers (biomedjax/models/resnet.py) -------------------------------------------------

STATS = "batch_stats"  # the backbone pytree's key for BatchNorm running statistics


def _batchnorm(flax: str, torch: str, stats_root: str) -> dict[str, Rule]:
  """torch BatchNorm2d: affine -> params; running_mean / running_var -> ``batch_stats``."""
  return {**_norm(flax, torch),
          f"{STATS}/{stats_root}/mean": Rule((f"{torch}.running_mean",)),
          f"{STATS}/{stats_root}/var": Rule((f"{torch}.running_var",))}


def resnet_rules(layers, flax: str = "visual", torch: str = "visual.",
                 variant: str = "clip", fc_bias: bool = True) -> dict[str, Rule]:
  """``ResNet`` under Flax ``flax`` <- a torch ResNet state dict with keys ``{torch}conv1.weight``
  (open_clip ``ModifiedResNet``: ``visual.``; PMC-CLIP's ``image_encoder(resnet50).pth``: no
  prefix; torchvision ``resnet50``: ``fc``). The running statistics go to ``batch_stats/{flax}``;
  ``num_batches_tracked`` is ignored (``IGNORED_BN``): with momentum 0.1 torch never reads it."""
  def conv(f, t):
    return {f"{flax}/{f}/kernel": Rule((f"{torch}{t}.weight",), hooks.conv_oihw_to_hwio)}

  def bn(f, t):
    return _batchnorm(f"{flax}/{f}", f"{torch}{t}", f"{flax}/{f}")

  rules = {}
  stem = (1, 2, 3) if variant == "clip" else (1,)
  for i in stem:
    rules.update(conv(f"conv{i}", f"conv{i}"))
    rules.update(bn(f"bn{i}", f"bn{i}"))
  for li, n in enumerate(layers, start=1):
    for bi in range(n):
      f, t = f"layer{li}_{bi}", f"layer{li}.{bi}"
      for j in (1, 2, 3):
        rules.update(conv(f"{f}/conv{j}", f"{t}.conv{j}"))
        rules.update(bn(f"{f}/bn{j}", f"{t}.bn{j}"))
      if bi == 0:  # the first block of every stage changes width (and stride): downsample
        rules.update(conv(f"{f}/downsample_0", f"{t}.downsample.0"))
        rules.update(bn(f"{f}/downsample_1", f"{t}.downsample.1"))
  if variant == "clip":
    rules[f"{flax}/attnpool/positional_embedding"] = Rule(
        (f"{torch}attnpool.positional_embedding",))
    for n in ("q_proj", "k_proj", "v_proj", "c_proj"):
      rules.update(_linear(f"{flax}/attnpool/{n}", f"{torch}attnpool.{n}"))
  else:
    rules.update(_linear(f"{flax}/fc", f"{torch}fc", fc_bias))
  return rules


def bn_counters(rules: dict[str, Rule]) -> dict[str, str]:
  """The ``num_batches_tracked`` key of every BatchNorm in ``rules``, with why it is dropped."""
  return {r.keys[0][:-len("running_mean")] + "num_batches_tracked":
          "BatchNorm step counter; torch reads it only when momentum is None (it is 0.1)"
          for r in rules.values() if r.keys[0].endswith(".running_mean")}


# -- OpenAI CLIP ---------------------------------------------------------------------------------

def _openai_block(f: str, b: str) -> dict[str, Rule]:
  """open_clip ``ResidualAttentionBlock``: torch MultiheadAttention packs q, k, v row-wise in
  ``in_proj_weight`` (3w, w); transposed it is the fused (w, 3w) kernel with q, k, v columns."""
  return {
      **_norm(f"{f}/ln_1", f"{b}.ln_1"),
      f"{f}/attn/qkv/kernel": Rule((f"{b}.attn.in_proj_weight",), hooks.linear_t),
      f"{f}/attn/qkv/bias": Rule((f"{b}.attn.in_proj_bias",)),
      **_linear(f"{f}/attn/proj", f"{b}.attn.out_proj"),
      **_norm(f"{f}/ln_2", f"{b}.ln_2"),
      **_linear(f"{f}/mlp/fc1", f"{b}.mlp.c_fc"),
      **_linear(f"{f}/mlp/fc2", f"{b}.mlp.c_proj"),
  }


def openai_rules(cfg: CLIPConfig) -> dict[str, Rule]:
  """open_clip ``CLIP`` (``ViT-B-16-quickgelu``, ``RN50`` etc.): ``visual.*``, the text tower at
  the top."""
  if cfg.vision.tower == "modified_resnet":
    rules = resnet_rules(cfg.vision.layers)
  else:
    rules = {
        "visual/conv1/kernel": Rule(("visual.conv1.weight",), hooks.conv_oihw_to_hwio),
        "visual/class_embedding": Rule(("visual.class_embedding",)),
        "visual/positional_embedding": Rule(("visual.positional_embedding",)),
        **_norm("visual/ln_pre", "visual.ln_pre"),
        **_norm("visual/ln_post", "visual.ln_post"),
        "visual/proj": Rule(("visual.proj",)),  # (width, embed): x @ proj, no transpose
    }
  rules.update({
      "text/token_embedding/embedding": Rule(("token_embedding.weight",)),
      "text/positional_embedding": Rule(("positional_embedding",)),
      **_norm("text/ln_final", "ln_final"),
      "text/text_projection": Rule(("text_projection",)),
      "logit_scale": Rule(("logit_scale",)),
  })
  if cfg.vision.tower == "vit":
    for i in range(cfg.vision.depth):
      rules.update(_openai_block(f"visual/resblocks_{i}", f"visual.transformer.resblocks.{i}"))
  for i in range(cfg.text.depth):
    rules.update(_openai_block(f"text/resblocks_{i}", f"transformer.resblocks.{i}"))
  return rules


def _hf_block(f: str, b: str) -> dict[str, Rule]:
  qkv = [f"{b}.self_attn.{n}_proj" for n in ("q", "k", "v")]
  return {
      **_norm(f"{f}/ln_1", f"{b}.layer_norm1"),
      f"{f}/attn/qkv/kernel": Rule(tuple(k + ".weight" for k in qkv), hooks.concat_linear_t),
      f"{f}/attn/qkv/bias": Rule(tuple(k + ".bias" for k in qkv), hooks.concat),
      **_linear(f"{f}/attn/proj", f"{b}.self_attn.out_proj"),
      **_norm(f"{f}/ln_2", f"{b}.layer_norm2"),
      **_linear(f"{f}/mlp/fc1", f"{b}.mlp.fc1"),
      **_linear(f"{f}/mlp/fc2", f"{b}.mlp.fc2"),
  }


def hf_clip_rules(cfg: CLIPConfig) -> dict[str, Rule]:
  """HuggingFace ``CLIPModel``: ``vision_model.*``, ``text_model.*`` and two bias-free Linears."""
  v, t = "vision_model", "text_model"
  rules = {
      "visual/conv1/kernel": Rule((f"{v}.embeddings.patch_embedding.weight",),
                                  hooks.conv_oihw_to_hwio),
      "visual/class_embedding": Rule((f"{v}.embeddings.class_embedding",)),
      "visual/positional_embedding": Rule((f"{v}.embeddings.position_embedding.weight",)),
      **_norm("visual/ln_pre", f"{v}.pre_layrnorm"),  # sic: HF's spelling
      **_norm("visual/ln_post", f"{v}.post_layernorm"),
      "visual/proj": Rule(("visual_projection.weight",), hooks.linear_t),
      "text/token_embedding/embedding": Rule((f"{t}.embeddings.token_embedding.weight",)),
      "text/positional_embedding": Rule((f"{t}.embeddings.position_embedding.weight",)),
      **_norm("text/ln_final", f"{t}.final_layer_norm"),
      "text/text_projection": Rule(("text_projection.weight",), hooks.linear_t),
      "logit_scale": Rule(("logit_scale",)),
  }
  for i in range(cfg.vision.depth):
    rules.update(_hf_block(f"visual/resblocks_{i}", f"{v}.encoder.layers.{i}"))
  for i in range(cfg.text.depth):
    rules.update(_hf_block(f"text/resblocks_{i}", f"{t}.encoder.layers.{i}"))
  return rules


OPENAI_IGNORED = {
    "attn_mask": "the causal mask buffer (-inf above the diagonal), rebuilt by the Flax attention",
    "input_resolution": "OpenAI JIT archive metadata; the config has the image size",
    "context_length": "OpenAI JIT archive metadata; the config has the context length",
    "vocab_size": "OpenAI JIT archive metadata; the config has the vocabulary size",
}
HF_CLIP_IGNORED = {
    "vision_model.embeddings.position_ids": "buffer 0..num_positions-1, recomputed",
    "text_model.embeddings.position_ids": "buffer 0..max_positions-1, recomputed",
}

# -- MedCLIP -------------------------------------------------------------------------------------

def medclip_rules(cfg: CLIPConfig) -> dict[str, Rule]:
  """MedCLIP's ``pytorch_model.bin`` (CalibPrompt models/medclip/modeling_medclip.py):
  ``vision_model.model`` = HF SwinModel (transformers 4.x key names; 5.x names are renamed to
  them first, ``convert/medclip_source.py``) + ``vision_model.projection_head``, or for
  MedCLIP-ResNet torchvision's resnet50 with its bias-free ``fc`` (lines 50-53);
  ``text_model.model`` = HF BertModel, ``text_model.projection_head``, ``logit_scale``."""
  v, s = cfg.vision, "vision_model.model"
  text = {**bert_rules(cfg.text.depth, "text_model.model"),
          **_linear("text/proj_0", "text_model.projection_head", bias=False),
          "logit_scale": Rule(("logit_scale",))}
  if v.arch == "resnet50":
    return {**resnet_rules(v.depths, "visual", f"{s}.", "torchvision", fc_bias=False), **text}
  rules = {
      "visual/swin/patch_embed/kernel": Rule(
          (f"{s}.embeddings.patch_embeddings.projection.weight",), hooks.conv_oihw_to_hwio),
      "visual/swin/patch_embed/bias": Rule((f"{s}.embeddings.patch_embeddings.projection.bias",)),
      **_norm("visual/swin/embed_norm", f"{s}.embeddings.norm"),
      **_norm("visual/swin/norm", f"{s}.layernorm"),
      **_linear("visual/head", "vision_model.projection_head", bias=False),
      **text,
  }
  for st, depth in enumerate(v.depths):
    for i in range(depth):
      f, b = f"visual/swin/stage_{st}_block_{i}", f"{s}.encoder.layers.{st}.blocks.{i}"
      qkv = [f"{b}.attention.self.{n}" for n in ("query", "key", "value")]
      rules.update({
          **_norm(f"{f}/ln_before", f"{b}.layernorm_before"),
          f"{f}/attn/qkv/kernel": Rule(tuple(k + ".weight" for k in qkv), hooks.concat_linear_t),
          f"{f}/attn/qkv/bias": Rule(tuple(k + ".bias" for k in qkv), hooks.concat),
          f"{f}/attn/relative_position_bias_table": Rule(
              (f"{b}.attention.self.relative_position_bias_table",)),
          **_linear(f"{f}/attn/proj", f"{b}.attention.output.dense"),
          **_norm(f"{f}/ln_after", f"{b}.layernorm_after"),
          **_linear(f"{f}/mlp/fc1", f"{b}.intermediate.dense"),
          **_linear(f"{f}/mlp/fc2", f"{b}.output.dense"),
      })
    if st < len(v.depths) - 1:
      m = f"{s}.encoder.layers.{st}.downsample"
      rules.update({**_norm(f"visual/swin/stage_{st}_merge/norm", f"{m}.norm"),
                    **_linear(f"visual/swin/stage_{st}_merge/reduction", f"{m}.reduction",
                              bias=False)})
  return rules


def medclip_ignored(cfg: CLIPConfig) -> dict[str, str]:
  """Buffers and unused heads a MedCLIP state dict may carry."""
  t = "text_model.model"
  ignored = {
      f"{t}.embeddings.position_ids": "buffer 0..max_positions-1, recomputed",
      f"{t}.embeddings.token_type_ids": "buffer of zeros, recomputed",
      f"{t}.pooler.dense.weight": "BERT pooler, unused by MedCLIP's hidden-state mean",
      f"{t}.pooler.dense.bias": "BERT pooler, unused by MedCLIP's hidden-state mean",
  }
  if cfg.vision.arch != "swin":
    return ignored
  for st, depth in enumerate(cfg.vision.depths):
    for i in range(depth):
      key = (f"vision_model.model.encoder.layers.{st}.blocks.{i}"
             ".attention.self.relative_position_index")
      ignored[key] = "buffer: the window's relative position index, recomputed (swin.py)"
  return ignored


def pmcclip_rules(cfg: CLIPConfig) -> dict[str, Rule]:
  """PMC-CLIP's three files joined by ``convert/pmcclip.py``: ``visual.`` + the ResNet state dict,
  ``text.`` + the BertModel state dict, ``text_projection`` and ``logit_scale``."""
  return {**resnet_rules(cfg.vision.layers), **text_rules(cfg, bert="text"),
          "logit_scale": Rule(("logit_scale",))}


PMCCLIP_IGNORED = {
    "text.embeddings.position_ids": "buffer 0..max_positions-1, recomputed",
    "text.embeddings.token_type_ids": "buffer of zeros, recomputed",
}


def ignored_keys(cfg: CLIPConfig, layout: str) -> dict[str, str]:
  """The keys of ``layout`` that the Flax model deliberately drops, with the reason, including
  the BatchNorm step counters of a ResNet tower."""
  rules_fn, ignored = LAYOUTS[(cfg.family, layout)]
  ignored = ignored(cfg) if callable(ignored) else ignored
  return {**ignored, **bn_counters(rules_fn(cfg))}  # empty without BatchNorm


# (family, layout) -> (rules, ignored keys with the reason each can be dropped: a dict, or a
# function of the config for layouts whose buffers depend on the depth)
LAYOUTS = {
    ("biomedclip", "open_clip"): (clip_rules, IGNORED),
    ("pmcclip", "pmcclip"): (pmcclip_rules, PMCCLIP_IGNORED),
    ("openai", "open_clip"): (openai_rules, OPENAI_IGNORED),
    ("openai", "hf"): (hf_clip_rules, HF_CLIP_IGNORED),
    ("medclip", "medclip"): (medclip_rules, medclip_ignored),
}
