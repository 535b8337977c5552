"""PMC-CLIP built offline with random weights, saved as the files a user downloads.

The reference (BiomedCoOp ``trainers/BiomedCoOp/biomedcoop_pmcclip.py``) builds
``ModifiedResNet(layers=[3,4,6,3], output_dim=768, heads=8, image_size=224, width=64)`` from
``clip/pmcclip.py`` (:287), a HuggingFace ``BertModel`` for BiomedBERT-base-uncased-abstract
(:291) and a bare projection tensor (:295). ``clip/pmcclip.py``'s ModifiedResNet is open_clip's
``ModifiedResNet`` (same modules and names, it returns ``{"image_features": x}`` instead of ``x``),
so open_clip's class from pip stands in for it. ``Reference`` is the reference's forward:
``pooler_output @ text_projection_layer`` (:65-67, :116-118), ``math.exp(4.4292)`` times the
cosines (:172, :203, :213-216).

Every tensor is perturbed, BatchNorm running statistics included, so no default value can hide a
wrong mapping.
"""

from __future__ import annotations

import json
import math
import pathlib

import torch
import transformers
from open_clip.modified_resnet import ModifiedResNet

from biomedjax.models import config as model_config
from biomedjax.models.vocab import write_vocab
from tests.parity import openclip_fixture

LOGIT_SCALE = 4.4292  # biomedcoop_pmcclip.py:172


def perturb_(model: torch.nn.Module, seed: int) -> None:
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for _, p in model.named_parameters():
      p.add_(torch.randn(p.shape, generator=g) * (0.1 if p.ndim <= 1 else 0.02))
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.normal_(0.0, 0.1, generator=g)
        m.running_var.uniform_(0.5, 1.5, generator=g)


def image_encoder(cfg: model_config.CLIPConfig) -> ModifiedResNet:
  v = cfg.vision
  return ModifiedResNet(layers=list(v.layers), output_dim=cfg.embed_dim, heads=v.heads,
                        image_size=v.image_size, width=v.width)


class Reference(torch.nn.Module):
  """The reference's PMC-CLIP forward (``PMCCLIP`` / ``CustomCLIP``), in eval or train mode."""

  def __init__(self, image_encoder, text_encoder, projection):
    super().__init__()
    self.image_encoder = image_encoder
    self.text_encoder = text_encoder
    self.text_projection_layer = torch.nn.Parameter(projection, requires_grad=False)

  def image_features(self, x):
    out = self.image_encoder(x)
    return out["image_features"] if isinstance(out, dict) else out

  def text_features(self, ids, mask):
    return self.text_encoder(ids, mask).pooler_output @ self.text_projection_layer

  def logits(self, x, ids, mask):
    img = self.image_features(x)
    txt = self.text_features(ids, mask)
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return math.exp(LOGIT_SCALE) * img @ txt.t()


def make_files(out: pathlib.Path, preset: str = "tiny_pmcclip", seed: int = 0):
  """Writes ``out/checkpoints/{image_encoder(resnet50),text_encoder,text_projection_layer}.pth``
  and a BiomedBERT-style HF folder ``out/biomedbert`` (config.json + WordPiece files); returns
  (checkpoints dir, tokenizer dir, the eval-mode ``Reference``)."""
  cfg = model_config.PRESETS[preset]()
  out = pathlib.Path(out)
  ckpt, tok = out / "checkpoints", out / "biomedbert"
  ckpt.mkdir(parents=True, exist_ok=True)
  torch.manual_seed(seed)
  img = image_encoder(cfg)
  bert_cfg = openclip_fixture.bert_config(cfg)
  bert = transformers.BertModel(transformers.BertConfig(**bert_cfg))
  proj = torch.randn(cfg.text.width, cfg.embed_dim) * cfg.text.width ** -0.5
  perturb_(img, seed)
  perturb_(bert, seed + 1)
  torch.save(img.state_dict(), ckpt / "image_encoder(resnet50).pth")
  torch.save(bert.state_dict(), ckpt / "text_encoder.pth")
  torch.save(proj, ckpt / "text_projection_layer.pth")
  write_vocab(tok, openclip_fixture.WORDS, size=cfg.text.vocab_size, context_length=512)
  (tok / "config.json").write_text(json.dumps(bert_cfg))
  return ckpt, tok, Reference(img, bert, proj).eval()


def tokenize(tok_dir, texts):
  """The reference's tokenizer call (biomedcoop_pmcclip.py:105): raw text, max_length 77."""
  hf = transformers.AutoTokenizer.from_pretrained(str(tok_dir))
  enc = hf(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
  return enc["input_ids"], enc["attention_mask"]
