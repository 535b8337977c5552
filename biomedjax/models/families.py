"""The backbone families as one explicit table: towers and tokenizer per ``CLIPConfig.family``.

Every method sees the same ``CLIP`` module (``encode_image``, ``embed_tokens``,
``encode_text_embeds``, ``encode_text``; parameters ``visual``, ``text``, ``logit_scale``); only
the tower modules and the tokenizer behind it differ, and this table is the one place that says
which. The conversion rules per family live in ``convert/mapping.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Callable, Iterable

from flax import linen as nn

from biomedjax.models import bpe
from biomedjax.models.bert import TextTransformer
from biomedjax.models import medclip
from biomedjax.models.config import CLIPConfig
from biomedjax.models.openai_clip import CausalTextTransformer, OpenAIVisionTransformer
from biomedjax.models.resnet import modified_resnet
from biomedjax.models.tokenizer import Tokenizer
from biomedjax.models.vit import VisionTransformer
from biomedjax.models.vocab import write_vocab


@dataclasses.dataclass(frozen=True)
class Family:
  vision: Callable[..., nn.Module]  # (vision config, embed_dim, remat=) -> pixels -> features
  text: type[nn.Module]         # (TextConfig, embed_dim) with embed_tokens / encode_embeds
  tokenizer: Callable           # (directory, context_length) -> callable tokenizer
  tokenizer_files: tuple[str, ...]
  # (directory, words, cfg) -> a generated vocabulary for random weights (no checkpoint files)
  random_vocab: Callable[[pathlib.Path, Iterable[str], CLIPConfig], pathlib.Path]
  # (low, high) that the model's own logits clamp logit_scale to before exp; None: no clamp
  logit_scale_range: tuple[float, float] | None = None


def _wordpiece_vocab(out, words, cfg):
  return write_vocab(out, words, size=cfg.text.vocab_size, context_length=cfg.text.context_length)


def openai_vision(cfg, embed_dim: int, remat: bool = False) -> nn.Module:
  """OpenAI CLIP's image tower: the ViT, or the ModifiedResNet (RN50) by ``cfg.tower``."""
  if cfg.tower == "modified_resnet":
    return modified_resnet(cfg, embed_dim, remat=remat)
  return OpenAIVisionTransformer(cfg, embed_dim, remat=remat)


FAMILIES = {
    "biomedclip": Family(
        VisionTransformer, TextTransformer, Tokenizer,
        ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"),
        _wordpiece_vocab),
    "openai": Family(
        openai_vision, CausalTextTransformer, bpe.BPETokenizer, bpe.TOKENIZER_FILES,
        lambda out, words, cfg: bpe.write_random_vocab(out, words, size=cfg.text.vocab_size)),
    "medclip": Family(
        medclip.vision_tower, medclip.MeanLayersText, medclip.PaddedTokenizer,
        ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"),
        _wordpiece_vocab, logit_scale_range=medclip.LOGIT_SCALE_RANGE),
    # PMC-CLIP: the reference calls the HF tokenizer on the raw text, no open_clip clean
    "pmcclip": Family(
        modified_resnet, TextTransformer, functools.partial(Tokenizer, clean_text=False),
        ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"),
        _wordpiece_vocab),
}


def of(cfg: CLIPConfig) -> Family:
  return FAMILIES[cfg.family]


def load_tokenizer(path: str | pathlib.Path, cfg: CLIPConfig):
  return of(cfg).tokenizer(path, cfg.text.context_length)


def random_tokenizer(cfg: CLIPConfig, out: str | pathlib.Path, words: Iterable[str] = ()):
  """A generated vocabulary in which ``words`` are whole tokens, for random-weight models."""
  return load_tokenizer(of(cfg).random_vocab(pathlib.Path(out), words, cfg), cfg)
