"""The MedCLIP towers, as CalibPrompt's copy of MedCLIP builds them
(``models/medclip/modeling_medclip.py`` of iabh1shekbasu/CalibPrompt).

Vision (``MedCLIPVisionModelViT``, lines 84-127): HF ``SwinModel`` of
``microsoft/swin-tiny-patch4-window7-224`` (``constants.py:5``), its ``pooler_output`` (line 124)
-> ``projection_head`` = Linear 768 -> 512 without bias (line 95). A one-channel input is repeated
to three channels (line 122); here images arrive as three channels already (a grey image as RGB
is that repeat), normalised with MedCLIP's grayscale mean/std on every channel
(``config.MEDCLIP_MEAN``). MedCLIP's ResNet-50 variant (``MedCLIPVisionModel``, lines 45-82:
torchvision ``resnet50``, ``fc`` replaced by Linear 2048 -> 512 without bias at line 53, its output
returned as is at line 82) is the shared ResNet tower's torchvision variant (``resnet.py``); the
reference tells the two apart by the class passed as ``MedCLIPModel(vision_cls=...)`` (line 131),
here ``vision.arch`` does (``vision_tower``).

Text (``MedCLIPTextModel``, lines 15-43): Bio_ClinicalBERT run with ``output_hidden_states``;
hidden states 1, 2 and -1 (the outputs of the first, second and last layer) are stacked, averaged
over every token position -- the pads included, as written (line 37: ``.mean(2)`` over the whole
padded length, the attention mask does not enter it) -- then over the three layers, and projected
by Linear 768 -> 512 without bias (line 26). Because pads are averaged in, the features depend on
the padded length: CalibPrompt pads every prompt to 25 tokens (``coop_medclip.py:90``,
``zsclip.py:76-82``), and the tokenizer here never pads to a shorter bucket.

Logit scale: ``MedCLIPModel.compute_logits`` clamps it to [0, 4.6052] before ``exp`` (line 229);
``CLIP.__call__`` (the model's logits) does the same for this family. CalibPrompt's trainers use
``logit_scale.exp()`` unclamped (``coop_medclip.py:258``, ``zsclip.py:159``), as the methods'
``Backbone.logit_scale`` does; the two agree whenever the stored value lies in the range.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import linen as nn

from biomedjax.models.bert import TextTransformer
from biomedjax.models.config import SwinConfig
from biomedjax.models.resnet import ResNet
from biomedjax.models.swin import SwinTransformer
from biomedjax.models.tokenizer import Tokenizer, pad_rows

LOGIT_SCALE_RANGE = (0.0, 4.6052)   # modeling_medclip.py:229
HIDDEN_STATES = (1, 2, -1)         # modeling_medclip.py:36


class SwinVision(nn.Module):
  """MedCLIP-ViT's image tower: Swin ``pooler_output`` -> ``head`` (no bias)."""
  cfg: SwinConfig
  embed_dim: int
  remat: bool = False

  @nn.compact
  def __call__(self, pixels):
    pooled = SwinTransformer(self.cfg, self.remat, name="swin")(pixels)
    return nn.Dense(self.embed_dim, use_bias=False, name="head")(pooled)


def vision_tower(cfg: SwinConfig, embed_dim: int, remat: bool = False) -> nn.Module:
  """The image tower of ``cfg.arch``: "swin" (MedCLIP-ViT) or "resnet50" (MedCLIP-ResNet:
  torchvision resnet50 with ``fc`` -> ``embed_dim`` without bias, modeling_medclip.py:50-53;
  ``cfg.depths`` blocks per stage at stem width ``cfg.embed_dim``)."""
  if cfg.arch == "swin":
    return SwinVision(cfg, embed_dim, remat)
  if cfg.arch == "resnet50":
    return ResNet(layers=tuple(cfg.depths), width=cfg.embed_dim, output_dim=embed_dim,
                  variant="torchvision", fc_bias=False, remat=remat)
  raise ValueError(f"model config 'vision.arch'={cfg.arch!r}: use 'swin' or 'resnet50'")


class MeanLayersText(TextTransformer):
  """Bio_ClinicalBERT with MedCLIP's pooling; parameters as ``bert.TextTransformer`` with a
  one-Linear projection (``proj_0``, no bias)."""

  def encode_embeds(self, embeds, mask, deterministic: bool = True):
    """word embeddings (N, L, width) + mask (N, L) -> features (N, embed_dim); the mask only
    hides pads as attention keys, every position enters the mean."""
    c = self.cfg
    if c.pool != "mean_1_2_last" or c.proj != "linear":
      raise ValueError(f"text pool {c.pool!r} / proj {c.proj!r}: MedCLIP's text tower is "
                       "'mean_1_2_last' / 'linear'")
    x = self.embed_positions(embeds, deterministic)
    hidden = [x]  # HF hidden_states: the embeddings, then each layer's output
    for block in self.blocks:
      x = block(x, mask, deterministic)
      hidden.append(x)
    pooled = jnp.stack([hidden[i] for i in HIDDEN_STATES], axis=1).mean(axis=2).mean(axis=1)
    return self.proj_0(pooled)


class PaddedTokenizer(Tokenizer):
  """Bio_ClinicalBERT's WordPiece as CalibPrompt calls it: ``tokenizer(texts,
  padding='max_length', max_length=25, truncation=True)`` (``coop_medclip.py:90``), without
  open_clip's text cleaning. ``length`` None or "bucket" pads to the context length, because the
  text tower averages over pads; an int pads to that length (a different model input)."""

  def __call__(self, texts, length=None):
    if isinstance(texts, str):
      texts = [texts]
    if length in (None, "bucket"):
      length = self.context_length
    enc = self.hf(list(texts), max_length=self.context_length, truncation=True, padding=False)
    return pad_rows(enc["input_ids"], list(texts), length, self.context_length, self.pad_id)
