"""Builds open_clip BiomedCLIP-architecture checkpoints offline, with random weights.

The real checkpoint cannot be downloaded here, so the parity tests make its exact architecture
(open_clip ``CustomTextCLIP``: timm ViT + HuggingFace BERT built from a local ``config.json`` with
``pretrained=False``), perturb every tensor so that no parameter keeps a default value a wrong
mapping could hide behind (LayerNorm ones and zeros, zero biases), and save it in the hub layout:
``open_clip_config.json``, ``open_clip_pytorch_model.bin`` and the tokenizer files.
"""

from __future__ import annotations

import json
import pathlib

import open_clip
import timm
import torch
from timm.models.vision_transformer import _create_vision_transformer

from biomedjax.models import config as model_config
from biomedjax.models.vocab import write_vocab

PUBMEDBERT_HUB = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
TINY_TIMM = "vit_biomedjax_tiny_patch16_224"

# A handful of whole words so that WordPiece produces multi-character tokens, not only letters.
WORDS = ("a photo of an the image scan tumor tumour brain glioma meningioma pituitary normal "
         "benign malignant chest x ray xray lung lungs opacity pneumonia covid kidney cyst stone "
         "knee retina glaucoma cataract polyp polyps colon tissue cell cells mri ct "
         "##s ##ed ##ing ##oma ##al with showing").split()


@timm.models.register_model
def vit_biomedjax_tiny_patch16_224(pretrained=False, **kwargs):
  """timm's ViT layout at the widths of biomedjax's ``tiny`` preset."""
  v = model_config.tiny().vision
  args = dict(img_size=v.image_size, patch_size=v.patch_size, embed_dim=v.width, depth=v.depth,
              num_heads=v.heads, mlp_ratio=v.mlp_dim / v.width)
  return _create_vision_transformer("vit_base_patch16_224", pretrained=False,
                                    **dict(args, **kwargs))


def bert_config(cfg: model_config.CLIPConfig) -> dict:
  t = cfg.text
  return {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": t.vocab_size,
          "hidden_size": t.width, "num_hidden_layers": t.depth, "num_attention_heads": t.heads,
          "intermediate_size": t.mlp_dim, "max_position_embeddings": t.max_positions,
          "type_vocab_size": t.type_vocab_size, "layer_norm_eps": t.ln_eps, "hidden_act": "gelu",
          "pad_token_id": t.pad_id, "hidden_dropout_prob": 0.1,
          "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02}


def perturb_(model: torch.nn.Module, seed: int) -> None:
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      scale = 0.1 if p.ndim <= 1 else 0.02
      p.add_(torch.randn(p.shape, generator=g) * scale)
    model.logit_scale.fill_(3.9)  # not open_clip's init, so a missed mapping shows


def make_checkpoint(out: pathlib.Path, preset: str = "tiny", seed: int = 0,
                    hub_layout: bool = True) -> tuple[pathlib.Path, torch.nn.Module]:
  """Writes an open_clip checkpoint directory; returns it and the (eval-mode) torch model.

  ``hub_layout``: name the text tower by the PubMedBERT hub id in open_clip_config.json, as the
  real BiomedCLIP file does (full size only); otherwise name the local BERT config directory.
  """
  cfg = model_config.PRESETS[preset]()
  out = pathlib.Path(out)
  bert_dir = out / "bert_config"
  bert_dir.mkdir(parents=True, exist_ok=True)
  (bert_dir / "config.json").write_text(json.dumps(bert_config(cfg)))
  write_vocab(out, WORDS, size=cfg.text.vocab_size, context_length=cfg.text.context_length)
  timm_name = "vit_base_patch16_224" if preset == "biomedclip" else TINY_TIMM
  vision_cfg = {"timm_model_name": timm_name, "timm_model_pretrained": False, "timm_pool": "",
                "timm_proj": "linear", "image_size": cfg.vision.image_size}
  text_cfg = {"hf_model_name": str(bert_dir), "hf_tokenizer_name": str(out),
              "hf_proj_type": "mlp", "hf_pooler_type": "cls_last_hidden_state_pooler",
              "hf_model_pretrained": False, "context_length": cfg.text.context_length}
  torch.manual_seed(seed)
  model = open_clip.model.CustomTextCLIP(cfg.embed_dim, vision_cfg, text_cfg)
  perturb_(model, seed)
  model.eval()
  torch.save(model.state_dict(), out / "open_clip_pytorch_model.bin")
  written_text_cfg = dict(text_cfg, hf_model_name=PUBMEDBERT_HUB, hf_tokenizer_name=PUBMEDBERT_HUB)
  written_text_cfg.pop("hf_model_pretrained")
  (out / "open_clip_config.json").write_text(json.dumps({
      "model_cfg": {"embed_dim": cfg.embed_dim, "vision_cfg": vision_cfg,
                    "text_cfg": written_text_cfg if hub_layout else text_cfg},
      "preprocess_cfg": {"mean": list(cfg.image_mean), "std": list(cfg.image_std)}}, indent=2))
  return out, model


def openclip_tokenizer(checkpoint_dir: pathlib.Path, context_length: int):
  return open_clip.tokenizer.HFTokenizer(str(checkpoint_dir), context_length=context_length)
