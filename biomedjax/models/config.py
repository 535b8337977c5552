"""Architecture configs of the two towers, and the presets built from them.

One config type per tower serves every size: the full BiomedCLIP and the tiny test/demo model are
two values of the same dataclasses, so no model code is duplicated per size. The fields are the
architecture facts that differ between CLIP-family backbones (sizes, pooling, activation, norm
eps); a new backbone is a new preset plus a conversion mapping, not new module code.
"""

from __future__ import annotations

import dataclasses
import json
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
  pool: str = "cls"          # open_clip cls_last_hidden_state_pooler: hidden state at position 0
  proj: str = "mlp"          # "mlp": Linear -> GELU -> Linear; "linear": one Linear
  proj_bias: bool = False


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
  embed_dim: int = 512
  vision: VisionConfig = VisionConfig()
  text: TextConfig = TextConfig()
  image_mean: tuple[float, float, float] = preprocess.OPENAI_MEAN
  image_std: tuple[float, float, float] = preprocess.OPENAI_STD
  init_logit_scale: float = 2.6592600  # log(1 / 0.07), open_clip's init

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "CLIPConfig":
    """Inverse of ``dataclasses.asdict``; unknown keys are an error naming the key."""
    d = dict(d)
    nested = {"vision": VisionConfig, "text": TextConfig}
    for key, sub_cls in nested.items():
      if key in d:
        d[key] = _strict(sub_cls, d[key], f"model config '{key}'")
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


PRESETS = {"biomedclip": biomedclip, "tiny": tiny}
