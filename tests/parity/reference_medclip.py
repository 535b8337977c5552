"""MedCLIP (ViT and ResNet) as CalibPrompt's ``models/medclip/modeling_medclip.py`` builds it,
offline.

The reference classes call ``AutoModel.from_pretrained`` (network); here the same modules are
built from their configs with random weights, and the forward code is the reference's, line for
line (line numbers of iabh1shekbasu/CalibPrompt ``models/medclip/modeling_medclip.py``):

* ``MedCLIPVisionModelViT.forward`` (118-127): repeat a 1-channel input, ``SwinModel`` ->
  ``pooler_output`` -> ``projection_head`` (Linear 768 -> 512, no bias; line 95).
* ``MedCLIPVisionModel`` (45-82): torchvision ``resnet50`` (``pretrained=True`` there, random
  here), ``fc`` replaced by ``nn.Linear(2048, 512, bias=False)`` (lines 50-53); ``forward``
  repeats a 1-channel input and returns ``self.model(pixel_values)`` (lines 75-82).
* ``MedCLIPTextModel.forward`` (28-43): BERT with ``output_hidden_states`` (line 23), stack hidden
  states 1, 2, -1, ``.permute(1,0,2,3).mean(2).mean(1)``, ``projection_head`` (no bias, line 26).
* ``MedCLIPModel.compute_logits`` (228-232): ``logit_scale.data`` clamped to [0, 4.6052], exp.

Configs written in code (no internet): swin-tiny-patch4-window7-224's ``SwinConfig`` and
Bio_ClinicalBERT's ``BertConfig`` (bert-base-cased sizes, 28996 tokens).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# microsoft/swin-tiny-patch4-window7-224 config.json (architecture fields)
SWIN_TINY = dict(image_size=224, patch_size=4, num_channels=3, embed_dim=96, depths=[2, 2, 6, 2],
                 num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4.0, qkv_bias=True,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.1,
                 hidden_act="gelu", use_absolute_embeddings=False, layer_norm_eps=1e-5)
# emilyalsentzer/Bio_ClinicalBERT config.json (= bert-base-cased sizes)
BIO_CLINICAL_BERT = dict(vocab_size=28996, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072, hidden_act="gelu",
                         hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                         max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
                         pad_token_id=0)
TINY_SWIN = dict(SWIN_TINY, image_size=56, embed_dim=16, depths=[2, 2], num_heads=[1, 2])
TINY_BERT = dict(BIO_CLINICAL_BERT, vocab_size=1024, hidden_size=64, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=256, max_position_embeddings=64)


class VisionViT(nn.Module):
  """MedCLIPVisionModelViT without the download (modeling_medclip.py:84-127)."""

  def __init__(self, swin_cfg: dict):
    super().__init__()
    from transformers import SwinConfig, SwinModel
    self.model = SwinModel(SwinConfig(**swin_cfg))
    self.projection_head = nn.Linear(self.model.num_features, 512, bias=False)

  def forward(self, pixel_values, project=True):
    if pixel_values.shape[1] == 1:
      pixel_values = pixel_values.repeat((1, 3, 1, 1))
    output = self.model(pixel_values)
    img_embeds = output["pooler_output"]
    if project:
      img_embeds = self.projection_head(img_embeds)
    return img_embeds


class VisionResNet(nn.Module):
  """MedCLIPVisionModel without the download (modeling_medclip.py:45-82)."""

  def __init__(self):
    super().__init__()
    import torchvision
    self.model = torchvision.models.resnet50(weights=None)
    num_fts = self.model.fc.in_features
    self.model.fc = nn.Linear(num_fts, 512, bias=False)

  def forward(self, pixel_values, **kwargs):
    if pixel_values.shape[1] == 1:
      pixel_values = pixel_values.repeat((1, 3, 1, 1))
    return self.model(pixel_values)


class Text(nn.Module):
  """MedCLIPTextModel without the download (modeling_medclip.py:15-43)."""

  def __init__(self, bert_cfg: dict):
    super().__init__()
    from transformers import BertConfig, BertModel
    self.model = BertModel(BertConfig(**bert_cfg, output_hidden_states=True))
    self.projection_head = nn.Linear(bert_cfg["hidden_size"], 512, bias=False)

  def forward(self, input_ids, attention_mask):
    output = self.model(input_ids=input_ids, attention_mask=attention_mask)
    last_hidden_states = torch.stack([output["hidden_states"][1], output["hidden_states"][2],
                                      output["hidden_states"][-1]])
    embed = last_hidden_states.permute(1, 0, 2, 3).mean(2).mean(1)
    return self.projection_head(embed)


class MedCLIP(nn.Module):
  """MedCLIPModel (modeling_medclip.py:129-232): vision_model, text_model, logit_scale.
  ``swin_cfg`` None: the ResNet vision class (``vision_cls=MedCLIPVisionModel``, line 131)."""

  def __init__(self, swin_cfg: dict | None = SWIN_TINY, bert_cfg: dict = TINY_BERT):
    super().__init__()
    self.vision_model = VisionResNet() if swin_cfg is None else VisionViT(swin_cfg)
    self.text_model = Text(bert_cfg)
    self.logit_scale = nn.Parameter(torch.log(torch.tensor(1 / 0.07)))

  def encode_text(self, input_ids, attention_mask=None):
    text_embeds = self.text_model(input_ids, attention_mask)
    return text_embeds / text_embeds.norm(dim=-1, keepdim=True)

  def encode_image(self, pixel_values):
    vision_output = self.vision_model(pixel_values=pixel_values)
    return vision_output / vision_output.norm(dim=-1, keepdim=True)

  def forward(self, input_ids, pixel_values, attention_mask=None):
    img_embeds = self.encode_image(pixel_values)
    text_embeds = self.encode_text(input_ids, attention_mask)
    return self.compute_logits(img_embeds, text_embeds)

  def compute_logits(self, img_emb, text_emb):
    self.logit_scale.data = torch.clamp(self.logit_scale.data, 0, 4.6052)
    logit_scale = self.logit_scale.exp()
    logits_per_text = torch.matmul(text_emb, img_emb.t()) * logit_scale
    return logits_per_text.t()


def perturb_(model: nn.Module, seed: int, logit_scale: float = math.log(1 / 0.07)) -> None:
  """Every tensor moved off its init (LayerNorm ones, zero biases and Swin's zero bias tables
  would hide a wrong mapping); BatchNorm running statistics (ResNet) off 0 / 1 too, positive
  variances kept."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for _, p in model.named_parameters():
      p.add_(torch.randn(p.shape, generator=g) * (0.1 if p.ndim <= 1 else 0.02))
    for name, b in model.named_buffers():
      if name.endswith("running_mean"):
        b.add_(torch.randn(b.shape, generator=g) * 0.1)
      elif name.endswith("running_var"):
        b.mul_(torch.rand(b.shape, generator=g) + 0.5)
    model.logit_scale.fill_(logit_scale)


def release_state_dict(model: MedCLIP) -> dict:
  """The model's state dict in the released file's layout: transformers-4.x Swin key names
  (HF's conversion_mapping.py "swin" renames, undone) with the persistent buffers 4.x saved
  (``relative_position_index`` per block, BERT's ``position_ids``)."""
  from convert import medclip_source
  sd = {}
  for key, value in model.state_dict().items():
    if key.startswith("vision_model.model.encoder."):
      for new, old in medclip_source.RENAMES:
        key = key.replace(new, old)
    sd[key] = value
  for name, module in model.vision_model.model.named_modules():  # Swin only
    if hasattr(module, "relative_position_bias"):
      rpb = module.relative_position_bias
      key = f"vision_model.model.{name}.relative_position_index".replace(
          ".attention.relative_position_index", ".attention.self.relative_position_index")
      sd[key] = rpb._create_relative_position_index()
  n = model.text_model.model.config.max_position_embeddings
  sd["text_model.model.embeddings.position_ids"] = torch.arange(n)[None]
  return sd
