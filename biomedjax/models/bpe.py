"""Byte-level BPE tokenizer of OpenAI CLIP, identical to open_clip's ``SimpleTokenizer``.

open_clip (``open_clip/tokenizer.py``, copied from openai/CLIP) cleans each text (ftfy fix, HTML
unescape twice, whitespace collapse, lower case), splits it with a regex into words, maps each
word's UTF-8 bytes to printable characters, applies the ranked merges (the lowest-ranked adjacent
pair first, every occurrence, until none applies; the last symbol carries ``</w>``), and wraps the
ids in start/end-of-text: ``[SOT] + ids + [EOT]``, zero-padded to 77. A text longer than the
context is cut to 77 tokens and its last one replaced by EOT.

A tokenizer directory holds ``vocab.json`` (token -> id), ``merges.txt`` (ranked merges, HF
layout, optional ``#version`` header) and ``bpe_config.json`` (the start/end token strings and
the pad id). ``write_openclip_vocab`` builds it from open_clip's ``bpe_simple_vocab_16e6.txt.gz``
exactly as ``SimpleTokenizer`` builds its vocabulary; a HuggingFace ``CLIPTokenizer``'s
``vocab.json``/``merges.txt`` are the same files. ``write_random_vocab`` makes a small one for
random-weight models. Only the standard library and ``regex`` are needed (no torch, no open_clip).
"""

from __future__ import annotations

import functools
import gzip
import json
import pathlib
from typing import Iterable, Sequence

from biomedjax.models.tokenizer import clean, pad_rows

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
CONFIG_FILE = "bpe_config.json"
TOKENIZER_FILES = (VOCAB_FILE, MERGES_FILE, CONFIG_FILE)
OPENCLIP_SPECIALS = ("<start_of_text>", "<end_of_text>")
OPENCLIP_NUM_MERGES = 49152 - 256 - 2  # SimpleTokenizer keeps merges[1:48895]
WORD_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


@functools.lru_cache()
def bytes_to_unicode() -> dict[int, str]:
  """Byte -> printable character, as openai/CLIP: printable Latin-1 bytes map to themselves."""
  bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1)))
  cs = bs[:]
  n = 0
  for b in range(256):
    if b not in bs:
      bs.append(b)
      cs.append(256 + n)
      n += 1
  return dict(zip(bs, (chr(c) for c in cs)))


def bpe_word(token: str, ranks: dict[tuple[str, str], int]) -> tuple[str, ...]:
  """One pre-tokenized word (byte characters) -> its BPE symbols, as ``SimpleTokenizer.bpe``."""
  word = tuple(token[:-1]) + (token[-1] + "</w>",)
  while len(word) > 1:
    pairs = set(zip(word, word[1:]))
    bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
    if bigram not in ranks:
      break
    first, second = bigram
    out, i = [], 0
    while i < len(word):
      if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
        out.append(first + second)
        i += 2
      else:
        out.append(word[i])
        i += 1
    word = tuple(out)
  return word


class BPETokenizer:
  """Callable tokenizer bound to one BPE directory and context length (same API as WordPiece)."""

  def __init__(self, path: str | pathlib.Path, context_length: int = 77):
    import regex
    path = pathlib.Path(path)
    missing = [n for n in TOKENIZER_FILES if not (path / n).is_file()]
    if missing:
      raise FileNotFoundError(f"{path}: no {', '.join(missing)}; expected the BPE tokenizer files "
                              f"{', '.join(TOKENIZER_FILES)} written by the converter")
    self.path = path
    self.encoder = json.loads((path / VOCAB_FILE).read_text(encoding="utf-8"))
    self.ranks = {m: i for i, m in enumerate(read_merges(path / MERGES_FILE))}
    cfg = json.loads((path / CONFIG_FILE).read_text())
    specials = (cfg["sot_token"], cfg["eot_token"])
    for t in specials:
      if t not in self.encoder:
        raise ValueError(f"{path / CONFIG_FILE}: special token {t!r} is not in {VOCAB_FILE}")
    self.sot_id, self.eot_id = (self.encoder[t] for t in specials)
    self.pad_id = int(cfg.get("pad_id", 0))
    self.context_length = context_length
    self.specials = set(specials)
    self.pattern = regex.compile("|".join(regex.escape(t) for t in specials) + "|" + WORD_PATTERN,
                                 regex.IGNORECASE)
    self.byte_encoder = bytes_to_unicode()
    self._cache: dict[str, list[int]] = {}

  def __len__(self) -> int:
    return len(self.encoder)

  def encode(self, text: str) -> list[int]:
    """Cleaned text -> BPE ids, without SOT/EOT."""
    ids = []
    for word in self.pattern.findall(text):
      if word in self.specials:
        ids.append(self.encoder[word])
        continue
      if word not in self._cache:
        chars = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
        self._cache[word] = [self.encoder[s] for s in bpe_word(chars, self.ranks)]
      ids.extend(self._cache[word])
    return ids

  def __call__(self, texts: str | Sequence[str], length: int | str | None = None):
    """-> (input_ids, attention_mask), int32 (N, length); ``length`` as the WordPiece tokenizer.

    Texts longer than the context are truncated as open_clip does: the first ``context_length``
    tokens, the last replaced by EOT (so EOT pooling still sees an end-of-text token).
    """
    if isinstance(texts, str):
      texts = [texts]
    texts = [clean(t).lower() for t in texts]
    rows = []
    for t in texts:
      r = [self.sot_id] + self.encode(t) + [self.eot_id]
      if len(r) > self.context_length:
        r = r[:self.context_length]
        r[-1] = self.eot_id
      rows.append(r)
    return pad_rows(rows, texts, length, self.context_length, self.pad_id)


def read_merges(path: pathlib.Path) -> list[tuple[str, str]]:
  lines = path.read_text(encoding="utf-8").split("\n")
  if lines and lines[0].startswith("#version"):
    lines = lines[1:]
  merges = [tuple(line.split()) for line in lines if line.strip()]
  bad = next((i for i, m in enumerate(merges) if len(m) != 2), None)
  if bad is not None:
    raise ValueError(f"{path}: merge {bad} is {' '.join(merges[bad])!r}, not two symbols")
  return merges


def _write(out: pathlib.Path, vocab: list[str] | dict[str, int], merges, sot: str, eot: str,
           pad_id: int = 0) -> pathlib.Path:
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  encoder = vocab if isinstance(vocab, dict) else {t: i for i, t in enumerate(vocab)}
  (out / VOCAB_FILE).write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")
  (out / MERGES_FILE).write_text(
      "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
  (out / CONFIG_FILE).write_text(json.dumps(
      {"kind": "bpe", "sot_token": sot, "eot_token": eot, "pad_id": pad_id}, indent=2))
  return out


def _base_vocab() -> list[str]:
  base = list(bytes_to_unicode().values())
  return base + [v + "</w>" for v in base]


def write_openclip_vocab(bpe_gz: str | pathlib.Path, out: str | pathlib.Path) -> pathlib.Path:
  """open_clip's ``bpe_simple_vocab_16e6.txt.gz`` -> a tokenizer directory, ids as SimpleTokenizer.

  Vocabulary: 256 byte characters, the same with ``</w>``, one token per merge (in rank order),
  then ``<start_of_text>`` (49406) and ``<end_of_text>`` (49407).
  """
  lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
  merges = [tuple(m.split()) for m in lines[1:OPENCLIP_NUM_MERGES + 1]]
  vocab = _base_vocab() + ["".join(m) for m in merges] + list(OPENCLIP_SPECIALS)
  return _write(out, vocab, merges, *OPENCLIP_SPECIALS)


def write_hf_vocab(vocab_json: pathlib.Path, merges_txt: pathlib.Path, out: pathlib.Path,
                   sot: str = "<|startoftext|>", eot: str = "<|endoftext|>") -> pathlib.Path:
  """A HuggingFace ``CLIPTokenizer``'s vocab.json + merges.txt -> a tokenizer directory.

  The pad id is 0 as open_clip's (HF pads with EOT); the mask, not the pad id, marks real tokens.
  """
  encoder = json.loads(pathlib.Path(vocab_json).read_text(encoding="utf-8"))
  return _write(out, encoder, read_merges(pathlib.Path(merges_txt)), sot, eot)


def write_random_vocab(out: str | pathlib.Path, words: Iterable[str] = (), size: int | None = None
                       ) -> pathlib.Path:
  """A small BPE vocabulary in which each of ``words`` is one token, for random-weight models.

  Any text tokenizes (the 512 byte symbols are in it); each word gets the chain of merges that
  builds it left to right. A word another word's merges would split has its chain moved to the
  front (lowest ranks) until every word is whole. ``size`` pads the vocabulary with unused tokens
  so that the start/end tokens take the last two ids, as in OpenAI's (49406, 49407).
  """
  import regex
  pattern = regex.compile(WORD_PATTERN, regex.IGNORECASE)
  enc = bytes_to_unicode()
  pieces = []
  for w in words:
    for piece in pattern.findall(clean(w).lower()):
      chars = "".join(enc[b] for b in piece.encode("utf-8"))
      if len(chars) > 1 and chars not in pieces:
        pieces.append(chars)

  def chain(chars):
    syms = list(chars[:-1]) + [chars[-1] + "</w>"]
    out, acc = [], syms[0]
    for s in syms[1:]:
      out.append((acc, s))
      acc += s
    return out

  order = list(pieces)
  for _ in range(len(pieces) + 1):
    merges = list(dict.fromkeys(m for p in order for m in chain(p)))
    ranks = {m: i for i, m in enumerate(merges)}
    split = [p for p in order if len(bpe_word(p, ranks)) != 1]
    if not split:
      break
    order = split + [p for p in order if p not in split]
  vocab = _base_vocab() + list(dict.fromkeys("".join(m) for m in merges))
  specials = list(OPENCLIP_SPECIALS)
  if size is not None:
    if len(vocab) + 2 > size:
      raise ValueError(f"{len(vocab) + 2} tokens do not fit a vocabulary of {size}")
    vocab += [f"<unused{i}>" for i in range(size - 2 - len(vocab))]
  return _write(out, vocab + specials, merges, *specials)
