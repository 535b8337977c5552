"""Writing a WordPiece vocabulary in the HuggingFace BERT layout.

Real checkpoints ship their tokenizer files. This builds one for models that have none: the
random-weight tiny model of the offline demo and the tests. The special tokens take PubMedBERT's
ids ([PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4); every lowercase letter, digit and punctuation
mark is a token and a ``##`` continuation, so any text tokenizes without [UNK].
"""

from __future__ import annotations

import json
import pathlib
import string
from typing import Iterable

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def write_vocab(out: str | pathlib.Path, words: Iterable[str] = (), size: int | None = None,
                context_length: int = 256) -> pathlib.Path:
  """Writes vocab.txt, tokenizer_config.json and special_tokens_map.json into ``out``.

  ``size`` pads the vocabulary with ``[unusedN]`` tokens (the embedding table's row count).
  """
  chars = string.ascii_lowercase + string.digits + string.punctuation
  tokens = list(SPECIALS) + list(chars) + ["##" + c for c in chars]
  seen = set(tokens)
  for w in words:
    w = w.lower()
    if w and w not in seen:
      seen.add(w)
      tokens.append(w)
  if size is not None:
    if len(tokens) > size:
      raise ValueError(f"{len(tokens)} tokens do not fit a vocabulary of {size}")
    tokens += [f"[unused{i}]" for i in range(size - len(tokens))]
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "vocab.txt").write_text("\n".join(tokens) + "\n")
  special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
             "cls_token": "[CLS]", "mask_token": "[MASK]"}
  (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
  (out / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
       "model_max_length": context_length, **special}, indent=2))
  return out
