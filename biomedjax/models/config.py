"""Architecture configs of the two towers, and the presets built from them.

One config type per tower serves every size: the full BiomedCLIP and the tiny test/demo model are
two values of the same dataclasses, so no model code is duplicated per size. The fields are the
architecture facts that differ between CLIP-family backbones (sizes, pooling, activation, norm
eps); ``CLIPConfig.family`` names the layout of the towers and the tokenizer:

* ``"biomedclip"``: timm-style ViT + post-norm BERT with [CLS] pooling, WordPiece tokenizer
  (open_clip ``CustomTextCLIP``; BiomedCLIP).
* ``"openai"``: OpenAI CLIP's ViT (``ln_pre``, patch conv without bias, ``ln_post``, ``proj``) or
  its ModifiedResNet (``vision.tower="modified_resnet"``: RN50) + pre-norm causal text transformer
  pooled at the end-of-text token, byte-level BPE tokenizer (open_clip ``CLIP``, HuggingFace
  ``CLIPModel``; OpenAI CLIP, PubMedCLIP, PLIP, QuiltNet).
* ``"pmcclip"``: PMC-CLIP as BiomedCoOp loads it (``trainers/*/*_pmcclip.py``): ModifiedResNet-50
  + HF BERT (BiomedBERT-base-uncased-abstract) whose ``pooler_output`` (dense + tanh on [CLS]) is
  multiplied by a bias-free projection (``text.proj="pooler"``), WordPiece tokenizer at 77.
* ``"medclip"``: MedCLIP: HF ``SwinModel`` (``SwinConfig`` below; or torchvision's resnet50,
  ``SwinConfig.arch="resnet50"``) + post-norm BERT
  (Bio_ClinicalBERT) pooled as the mean of hidden states 1, 2 and -1, WordPiece tokenizer
  (``biomedjax.models.medclip``).

``biomedjax.models.families`` maps each name to its modules and tokenizer.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from biomedjax.models import preprocess


@dataclasses.dataclass(frozen=True)
class VisionConfig:
  """A pre-norm ViT as timm builds it (``vit_base_patch16_224`` by default)."""
  image_size: int = 224
  patch_size: int = 16
  width: int = 768
  depth: int = 12
  heads: int = 12
  mlp_dim: int = 3072
  ln_eps: float = 1e-6
  act: str = "gelu"          # exact erf GELU, as torch.nn.GELU()
  qkv_bias: bool = True
  pool: str = "token"        # "token": class token; "avg": mean of patch tokens
  proj_bias: bool = False    # open_clip head.proj
  tower: str = "vit"         # "vit", or "modified_resnet" (biomedjax/models/resnet.py: OpenAI
                             #   CLIP RN50 / PMC-CLIP; uses layers, width, heads, image_size)
  layers: tuple[int, ...] = ()  # ResNet blocks per stage, (3, 4, 6, 3) for ResNet-50

  def __post_init__(self):
    if self.tower not in TOWERS:
      raise ValueError(f"model config 'vision.tower'={self.tower!r}: expected one of {TOWERS}")
    if self.tower == "modified_resnet" and len(self.layers) != 4:
      raise ValueError(f"model config 'vision.layers'={list(self.layers)}: a ResNet tower needs "
                       "4 stage depths, e.g. [3, 4, 6, 3]")

  @property
  def num_patches(self) -> int:
    return (self.image_size // self.patch_size) ** 2


@dataclasses.dataclass(frozen=True)
class TextConfig:
  """A post-norm BERT encoder as HuggingFace builds it, plus open_clip's pooler and projection."""
  vocab_size: int = 30522
  width: int = 768
  depth: int = 12
  heads: int = 12
  mlp_dim: int = 3072
  max_positions: int = 512
  type_vocab_size: int = 2
  ln_eps: float = 1e-12
  act: str = "gelu"
  hidden_dropout: float = 0.1     # HF hidden_dropout_prob (training mode only)
  attention_dropout: float = 0.1  # HF attention_probs_dropout_prob (training mode only)
  pad_id: int = 0
  context_length: int = 256
  pool: str = "cls"          # "cls": hidden state at position 0 (open_clip
                             #   cls_last_hidden_state_pooler); "eot": at the end-of-text token
  proj: str = "mlp"          # "mlp": Linear -> GELU -> Linear; "linear": one Linear;
                             #   "pooler": BERT pooler (dense + tanh) -> bias-free Linear (PMC-CLIP)
  proj_bias: bool = False


@dataclasses.dataclass(frozen=True)
class SwinConfig:
  """A Swin Transformer as HuggingFace's ``SwinModel`` builds it (``swin-tiny-patch4-window7-224``
  by default), pooled by the mean over tokens (``pooler_output``) and projected without bias.

  ``arch`` names the vision tower of the MedCLIP family: "swin" (MedCLIP-ViT) or "resnet50"
  (MedCLIP-ResNet: torchvision's resnet50, ``biomedjax.models.medclip.vision_tower``). For
  "resnet50" the same fields size the ResNet: ``depths`` are the bottleneck blocks per stage
  ((3, 4, 6, 3)), ``embed_dim`` the stem width (64), ``image_size`` the input; ``heads``,
  ``window_size``, ``patch_size`` and ``mlp_ratio`` are Swin's only."""
  arch: str = "swin"
  image_size: int = 224
  patch_size: int = 4
  embed_dim: int = 96              # width of the first stage; doubles at each patch merging
  depths: tuple[int, ...] = (2, 2, 6, 2)
  heads: tuple[int, ...] = (3, 6, 12, 24)
  window_size: int = 7
  mlp_ratio: float = 4.0
  ln_eps: float = 1e-5             # HF SwinConfig.layer_norm_eps (and nn.LayerNorm's default)
  act: str = "gelu"
  qkv_bias: bool = True

  def __post_init__(self):
    if self.arch not in MEDCLIP_ARCHS:
      raise ValueError(f"model config 'vision.arch'={self.arch!r}: use one of {MEDCLIP_ARCHS}")
    if self.arch == "resnet50" and len(self.depths) != 4:
      raise ValueError(f"model config 'vision.depths'={list(self.depths)}: MedCLIP's ResNet "
                       "needs 4 stage depths, e.g. [3, 4, 6, 3]")

  @property
  def width(self) -> int:
    """Channels of the last stage (768 for Swin-T), the width pooled and projected."""
    return self.embed_dim * 2 ** (len(self.depths) - 1)


MEDCLIP_ARCHS = ("swin", "resnet50")
FAMILIES = ("biomedclip", "openai", "pmcclip", "medclip")
# The text pooling each family's towers implement (``TextConfig.pool``).
FAMILY_POOL = {"biomedclip": "cls", "openai": "eot", "pmcclip": "cls", "medclip": "mean_1_2_last"}
TOWERS = ("vit", "modified_resnet")


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
  family: str = "biomedclip"  # one of FAMILIES; configs written before it existed are BiomedCLIP
  embed_dim: int = 512
  vision: VisionConfig = VisionConfig()
  text: TextConfig = TextConfig()
  image_mean: tuple[float, float, float] = preprocess.OPENAI_MEAN
  image_std: tuple[float, float, float] = preprocess.OPENAI_STD
  init_logit_scale: float = 2.6592600  # log(1 / 0.07), open_clip's init

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"model config 'family'={self.family!r}: expected one of {FAMILIES}")
    want_pool = FAMILY_POOL[self.family]
    if self.text.pool != want_pool:
      raise ValueError(f"model config 'text.pool'={self.text.pool!r}: family {self.family!r} "
                       f"pools at {want_pool!r}")
    want_vision = SwinConfig if self.family == "medclip" else VisionConfig
    if not isinstance(self.vision, want_vision):
      raise ValueError(f"model config 'vision': family {self.family!r} needs a "
                       f"{want_vision.__name__}, got {type(self.vision).__name__}")
    want_tower = {"biomedclip": ("vit",), "pmcclip": ("modified_resnet",)}.get(self.family, TOWERS)
    if want_vision is VisionConfig and self.vision.tower not in want_tower:
      raise ValueError(f"model config 'vision.tower'={self.vision.tower!r}: family "
                       f"{self.family!r} has a {want_tower[0]!r} image tower")
    if (self.family == "pmcclip") != (self.text.proj == "pooler"):
      raise ValueError(f"model config 'text.proj'={self.text.proj!r}: the BERT pooler head "
                       "('pooler') is PMC-CLIP's, and PMC-CLIP's text head is the pooler")
    if self.family == "openai":  # open_clip builds OpenAI CLIP's text tower without dropout
      for key in ("hidden_dropout", "attention_dropout"):
        if getattr(self.text, key):
          raise ValueError(f"model config 'text.{key}'={getattr(self.text, key)}: the causal "
                           "CLIP text tower has no dropout; set it to 0.0")

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "CLIPConfig":
    """Inverse of ``dataclasses.asdict``; unknown keys are an error naming the key."""
    d = dict(d)
    if d.get("family") == "openai" and isinstance(d.get("text"), dict):
      # The TextConfig dropout defaults are BERT's; the causal CLIP tower has none.
      d["text"] = {"hidden_dropout": 0.0, "attention_dropout": 0.0, **d["text"]}
    if isinstance(d.get("vision"), dict) and "layers" in d["vision"]:
      d["vision"] = {**d["vision"], "layers": tuple(d["vision"]["layers"])}
    nested = {"vision": SwinConfig if d.get("family") == "medclip" else VisionConfig,
              "text": TextConfig}
    for key, sub_cls in nested.items():
      if key in d:
        d[key] = _strict(sub_cls, d[key], f"model config '{key}'")
    if isinstance(d.get("vision"), SwinConfig):
      d["vision"] = dataclasses.replace(d["vision"], depths=tuple(d["vision"].depths),
                                        heads=tuple(d["vision"].heads))
    for key in ("image_mean", "image_std"):
      if key in d:
        d[key] = tuple(d[key])
    return _strict(cls, d, "model config")

  @classmethod
  def from_json(cls, text: str) -> "CLIPConfig":
    return cls.from_dict(json.loads(text))


def _strict(cls, values: dict[str, Any], what: str):
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f"{what}: unknown key(s) {unknown}; expected some of {sorted(known)}")
  return cls(**values)


def biomedclip() -> CLIPConfig:
  """BiomedCLIP-PubMedBERT_256-vit_base_patch16_224: ViT-B/16 + PubMedBERT, 195.9M parameters."""
  return CLIPConfig()


def tiny() -> CLIPConfig:
  """A few-hundred-thousand-parameter model of the same architecture, for tests and the demo.

  Its vision tower is timm's ``vit_base_patch16_224`` layout at width 64 and its text tower a
  2-layer BERT, so the same conversion mapping and parity tests apply to it.
  """
  return CLIPConfig(
      embed_dim=32,
      vision=VisionConfig(width=64, depth=2, heads=2, mlp_dim=256),
      text=TextConfig(vocab_size=1024, width=64, depth=2, heads=2, mlp_dim=256,
                      max_positions=256, context_length=256),
  )


def _openai(patch_size: int) -> CLIPConfig:
  """OpenAI CLIP ViT-B/<patch_size> (open_clip ``ViT-B-16-quickgelu`` / ``ViT-B-32-quickgelu``)."""
  return CLIPConfig(
      family="openai", embed_dim=512,
      vision=VisionConfig(image_size=224, patch_size=patch_size, width=768, depth=12, heads=12,
                          mlp_dim=3072, ln_eps=1e-5, act="quick_gelu"),
      text=TextConfig(vocab_size=49408, width=512, depth=12, heads=8, mlp_dim=2048,
                      max_positions=77, ln_eps=1e-5, act="quick_gelu", pad_id=0,
                      context_length=77, pool="eot", proj="linear", hidden_dropout=0.0,
                      attention_dropout=0.0),
      init_logit_scale=math.log(1 / 0.07))


def clip_vit_b16() -> CLIPConfig:
  """OpenAI CLIP ViT-B/16 (QuickGELU, LayerNorm eps 1e-5): 149.6M parameters."""
  return _openai(16)


def clip_vit_b32() -> CLIPConfig:
  """OpenAI CLIP ViT-B/32, the architecture of PubMedCLIP."""
  return _openai(32)


def tiny_clip() -> CLIPConfig:
  """The OpenAI-CLIP layout at tiny widths, for tests and the demo.

  It keeps the full 49408-token BPE vocabulary and 77-token context, so the real tokenizer (and
  open_clip's) applies to it unchanged; everything else is a few hundred thousand parameters.
  """
  c = _openai(16)
  return dataclasses.replace(
      c, embed_dim=32,
      vision=dataclasses.replace(c.vision, width=64, depth=2, heads=2, mlp_dim=256),
      text=dataclasses.replace(c.text, width=64, depth=2, heads=2, mlp_dim=256))


# MedCLIP's grayscale normalisation (CalibPrompt models/medclip/constants.py:8-9), the same value
# on the three channels: a grey image as RGB then equals MedCLIP's one channel repeated three
# times (models/medclip/modeling_medclip.py:122).
MEDCLIP_MEAN = (0.5862785803043838,) * 3
MEDCLIP_STD = (0.27950088968644304,) * 3


def medclip() -> CLIPConfig:
  """MedCLIP-ViT: Swin-T (swin-tiny-patch4-window7-224) + Bio_ClinicalBERT (bert-base-cased sizes,
  28996 tokens), both projected to 512 without bias: 136.0M parameters. Text at CalibPrompt's
  25 tokens (trainers/classification/coop_medclip.py:90, zsclip.py:76-82); the pooling averages
  over every position, pads included, so the length is part of the model."""
  return CLIPConfig(
      family="medclip", embed_dim=512, vision=SwinConfig(),
      text=TextConfig(vocab_size=28996, width=768, depth=12, heads=12, mlp_dim=3072,
                      max_positions=512, type_vocab_size=2, ln_eps=1e-12, act="gelu", pad_id=0,
                      context_length=25, pool="mean_1_2_last", proj="linear", proj_bias=False),
      image_mean=MEDCLIP_MEAN, image_std=MEDCLIP_STD, init_logit_scale=math.log(1 / 0.07))


def tiny_medclip() -> CLIPConfig:
  """The MedCLIP layout at tiny widths (2 Swin stages, 2-layer BERT) on 224-px images, what the
  method configs feed (a pixel-space program needs the tower's canvas to hold its image); the
  projections keep MedCLIP's 512 outputs, which its code fixes (modeling_medclip.py:26, 95)."""
  c = medclip()
  return dataclasses.replace(
      c,
      vision=SwinConfig(image_size=224, embed_dim=16, depths=(2, 2), heads=(1, 2)),
      text=dataclasses.replace(c.text, vocab_size=1024, width=64, depth=2, heads=2, mlp_dim=256,
                               max_positions=64))


def medclip_resnet() -> CLIPConfig:
  """MedCLIP-ResNet (``MedCLIPVisionModel``, CalibPrompt models/medclip/modeling_medclip.py:45-82):
  torchvision resnet50 whose ``fc`` is Linear 2048 -> 512 without bias (line 53), the features
  unnormalised until ``encode_image`` (lines 196-200); the text tower, tokenizer, normalisation and
  logit scale of ``medclip()``."""
  return dataclasses.replace(medclip(), vision=SwinConfig(arch="resnet50", depths=(3, 4, 6, 3),
                                                          embed_dim=64, heads=()))


def tiny_medclip_resnet() -> CLIPConfig:
  """MedCLIP-ResNet at tiny widths: one bottleneck per stage at width 8, 224 px (what the method
  configs feed), and ``tiny_medclip``'s text tower."""
  vision = SwinConfig(arch="resnet50", depths=(1, 1, 1, 1), embed_dim=8, heads=())
  return dataclasses.replace(tiny_medclip(), vision=vision)


def plip() -> CLIPConfig:
  """PLIP (HF ``CLIPModel`` vinid/plip): OpenAI CLIP ViT-B/32, QuickGELU."""
  return clip_vit_b32()


def quiltnet() -> CLIPConfig:
  """QuiltNet-B-32 as CalibPrompt runs it: ``quiltnet_b32.pt`` through OpenAI CLIP's
  ``build_model`` (trainers/classification/coop.py:38-58), whose blocks use QuickGELU
  (models/clip/model.py:162-175): OpenAI CLIP ViT-B/32."""
  return clip_vit_b32()


PRESETS = {"biomedclip": biomedclip, "tiny": tiny, "clip_vit_b16": clip_vit_b16,
           "clip_vit_b32": clip_vit_b32, "tiny_clip": tiny_clip, "medclip": medclip,
           "tiny_medclip": tiny_medclip, "medclip_resnet": medclip_resnet,
           "tiny_medclip_resnet": tiny_medclip_resnet, "pubmedclip": clip_vit_b32, "plip": plip,
           "quiltnet": quiltnet}


def _resnet50(heads: int) -> VisionConfig:
  """ModifiedResNet-50 at 224 px (open_clip ``RN50``: heads = width * 32 // 64 = 32; PMC-CLIP:
  ``ModifiedResNet(layers=[3,4,6,3], output_dim=768, heads=8, image_size=224, width=64)``,
  BiomedCoOp ``trainers/BiomedCoOp/biomedcoop_pmcclip.py:287``)."""
  return VisionConfig(tower="modified_resnet", layers=(3, 4, 6, 3), width=64, heads=heads,
                      image_size=224)


def _tiny_resnet(v: VisionConfig) -> VisionConfig:
  """The same tower at width 8 with one block per stage (224 px, what the method configs feed)."""
  return dataclasses.replace(v, layers=(1, 1, 1, 1), width=8, heads=2)


def clip_rn50(quick_gelu: bool = False) -> CLIPConfig:
  """OpenAI CLIP RN50 (open_clip ``RN50``; ``RN50-quickgelu`` with ``quick_gelu``):
  ModifiedResNet-50 -> 1024 + the 12-layer causal text transformer (GELU unless quick_gelu): 102M parameters."""
  c = _openai(16)
  act = "quick_gelu" if quick_gelu else "gelu"
  return dataclasses.replace(c, embed_dim=1024, vision=_resnet50(heads=32),
                             text=dataclasses.replace(c.text, act=act))


def tiny_clip_rn() -> CLIPConfig:
  """OpenAI CLIP's ResNet layout at tiny widths (the full BPE vocabulary, as ``tiny_clip``)."""
  c = tiny_clip()
  return dataclasses.replace(c, vision=_tiny_resnet(_resnet50(heads=32)))


PMCCLIP_LOGIT_SCALE = 4.4292  # hard-coded, BiomedCoOp trainers/BiomedCoOp/biomedcoop_pmcclip.py:172


def pmcclip() -> CLIPConfig:
  """PMC-CLIP as BiomedCoOp builds it: ModifiedResNet-50 (8 attention-pool heads) -> 768 and
  BiomedBERT-base (BERT defaults, dropout 0.1) whose pooler output is projected 768 -> 768;
  WordPiece padded to 77; exp(4.4292) as the logit scale; OpenAI mean/std (the Dassl configs'
  PIXEL_MEAN/STD, e.g. ``configs/trainers/BiomedCoOp/base_to_novel/btmri.yaml:11``)."""
  return CLIPConfig(family="pmcclip", embed_dim=768, vision=_resnet50(heads=8),
                    text=TextConfig(context_length=77, proj="pooler"),
                    init_logit_scale=PMCCLIP_LOGIT_SCALE)


def tiny_pmcclip() -> CLIPConfig:
  """PMC-CLIP's layout at tiny widths (a generated 1024-word vocabulary, 2-layer BERT)."""
  return dataclasses.replace(
      pmcclip(), embed_dim=32, vision=_tiny_resnet(_resnet50(heads=8)),
      text=TextConfig(vocab_size=1024, width=64, depth=2, heads=2, mlp_dim=256,
                      max_positions=128, context_length=77, proj="pooler"))


PRESETS.update({"clip_rn50": clip_rn50, "clip_rn50_quickgelu": lambda: clip_rn50(True),
                "tiny_clip_rn": tiny_clip_rn, "pmcclip": pmcclip, "tiny_pmcclip": tiny_pmcclip})
