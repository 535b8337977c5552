"""Text -> (input_ids, attention_mask), identical to open_clip's ``HFTokenizer`` for BiomedCLIP.

open_clip cleans each text (ftfy.fix_text, double HTML unescape, whitespace collapse), then calls
the HuggingFace tokenizer with ``padding='max_length', truncation=True`` at the context length.
The same HuggingFace tokenizer files are used here, so ids match token for token.

``length`` pads to a shorter bucket instead of the context length: with masked pads the text
tower's output does not change (tested), and prompt learning runs several times faster.
"""

from __future__ import annotations

import html
import pathlib
from typing import Sequence

import numpy as np

TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.json")


def clean(text: str) -> str:
  """open_clip's 'whitespace' clean: ftfy fix, HTML unescape twice, collapse whitespace."""
  import ftfy  # a runtime dependency; imported here so importing biomedjax stays light
  text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
  return " ".join(text.split()).strip()


def bucket(n: int, multiple: int = 16, cap: int | None = None) -> int:
  """Round a token count up to a multiple (the jit cache then holds few shapes)."""
  n = -(-n // multiple) * multiple
  return min(n, cap) if cap else n


class Tokenizer:
  """Callable tokenizer bound to one vocabulary directory and context length."""

  def __init__(self, path: str | pathlib.Path, context_length: int = 256,
               clean_text: bool = True):
    """``clean_text=False``: the raw HF tokenizer call, without open_clip's clean (PMC-CLIP's
    reference tokenizes with ``AutoTokenizer`` directly, biomedcoop_pmcclip.py:105)."""
    from transformers import AutoTokenizer
    path = pathlib.Path(path)
    if not (path / "vocab.txt").is_file() and not (path / "tokenizer.json").is_file():
      raise FileNotFoundError(f"{path}: no vocab.txt or tokenizer.json; expected the tokenizer "
                              f"files of the checkpoint ({', '.join(TOKENIZER_FILES[:3])})")
    self.path = path
    self.hf = AutoTokenizer.from_pretrained(str(path))
    self.context_length = context_length
    self.pad_id = self.hf.pad_token_id
    self.clean_text = clean_text

  def __call__(self, texts: str | Sequence[str], length: int | str | None = None):
    """-> (input_ids, attention_mask), int32 (N, length).

    length: None pads to the context length (open_clip's behaviour); an int pads to that many
    tokens; "bucket" pads to the longest text rounded up to a multiple of 16. Texts are always
    truncated at the context length as the reference does; a text that would not fit a shorter
    ``length`` is an error rather than a silent truncation that would change its features.
    """
    if isinstance(texts, str):
      texts = [texts]
    if self.clean_text:
      texts = [clean(t) for t in texts]
    enc = self.hf(texts, max_length=self.context_length, truncation=True, padding=False)
    return pad_rows(enc["input_ids"], texts, length, self.context_length, self.pad_id)


def pad_rows(rows, texts, length, context_length: int, pad_id: int):
  """Token rows (already truncated at the context length) -> (ids, mask) int32 (N, length).

  ``length`` as in ``Tokenizer.__call__``. The mask marks the real tokens of each row (not
  ``ids != pad``: a byte-level BPE vocabulary uses the pad id 0 for a real token, "!").
  """
  longest = max((len(r) for r in rows), default=1)
  if length is None:
    length = context_length
  elif length == "bucket":
    length = bucket(longest, cap=context_length)
  elif not isinstance(length, int) or length < 1:
    raise ValueError(f"length must be None, 'bucket' or a positive int, got {length!r}")
  if longest > length:
    i = max(range(len(rows)), key=lambda j: len(rows[j]))
    raise ValueError(f"text {i} ({texts[i][:60]!r}...) has {longest} tokens, more than "
                     f"length={length}; use a longer length or None")
  ids = np.full((len(rows), length), pad_id, np.int32)
  mask = np.zeros((len(rows), length), np.int32)
  for i, r in enumerate(rows):
    ids[i, :len(r)] = r
    mask[i, :len(r)] = 1
  return ids, mask
