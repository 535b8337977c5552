"""User-supplied attribute sentences (AttrVR / BioMedVR) and the reference's per-class sampling.

Files: ``<attributes_dir>/<key>_<head>.json`` with head "des" (descriptive attributes), "dist"
(distinctive attributes) or "confuse" (BioMedVR's confusion-aware attributes), each a JSON object
``{class key: [sentence, ...]}``. Class keys are the dataset's class names with spaces written as
underscores (``benign_tumor``), matched case-insensitively (``normal_OCT_scan``). ``<key>`` is the
reference's dataset key (``btmri``, ``knee_xray``, ``lung_colon``, ...; ``attribute_key`` maps the
catalog's names to it).

Sampling, as JXLiu-AI/BioMedVR ``tools.py`` (``clip_attr_classifier``) does once per run, per
class in label order and head after head (des, dist, confuse):

* keep the sentences of at least 20 characters;
* if m < n_kept, draw m of them **without** replacement (``random.sample``);
* otherwise (n_kept <= m, equality included) draw m **with** replacement (``random.choices``).

The released medical files hold 5 sentences per class, so m = 20 draws 20 times with replacement
from 5 (a quirk, reproduced by default: ``attr_sampling="reference"``). The draws use numpy seeded
by the run seed, one stream per head: Python's ``random`` stream of the reference cannot be
matched draw for draw, so only the distribution is the reference's. ``attr_sampling="unique"``:
every distinct kept sentence once (and the head then averages min(k, n) of them).

Every problem is one error naming the file, the class and, where there is one, the sentence: a
missing file, a missing class, an empty list after the 20-character filter, a sentence longer than
the text tower's context (never truncated silently: that would change its features), and a file
whose class count differs from the dataset's.
"""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np

from biomedjax.models.bpe import BPETokenizer
from biomedjax.models.tokenizer import clean

HEADS = ("des", "dist", "confuse")
MIN_CHARS = 20  # the reference keeps sentences of at least this many characters
SAMPLINGS = ("reference", "unique")
# Catalog dataset names whose attribute-file key differs (the reference's spelling).
# Natural-image keys (data/natural.py) are the reference's already.
ATTRIBUTE_KEYS = {"kneexray": "knee_xray", "lungcolon": "lung_colon"}


def attribute_key(dataset: str) -> str:
  """The attribute-file key of a dataset name (``kneexray`` -> ``knee_xray``)."""
  return ATTRIBUTE_KEYS.get(dataset.lower(), dataset.lower())


def class_key(name: str) -> str:
  return name.replace(" ", "_").lower()


def path(directory, key: str, head: str) -> pathlib.Path:
  return pathlib.Path(directory) / f"{key}_{head}.json"


def load(directory, key: str, head: str, classnames) -> list[list[str]]:
  """The kept (>= 20 characters) sentences of every class, in label order."""
  file = path(directory, key, head)
  if not file.is_file():
    held = sorted({p.name.rsplit("_", 1)[0] for p in pathlib.Path(directory).glob(
        f"*_{head}.json")}) if pathlib.Path(directory).is_dir() else []
    raise FileNotFoundError(
        f"attribute file {file} not found: --config.method.attributes_dir={str(directory)!r} "
        f"must hold {key}_{head}.json, or pass --config.method.attributes_dataset=<key> for "
        f"the files of another key" + (f" (the folder has: {', '.join(held)})" if held else ""))
  try:
    raw = json.loads(file.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ValueError(f"attribute file {file}: not valid JSON ({e})") from None
  if not isinstance(raw, dict):
    raise ValueError(f"attribute file {file}: expected a JSON object {{class: [sentences]}}, "
                     f"got {type(raw).__name__}")
  by_key = {}
  for k, v in raw.items():
    if class_key(k) in by_key:
      raise ValueError(f"attribute file {file}: class {k!r} appears twice (keys are matched "
                       f"case-insensitively)")
    by_key[class_key(k)] = (k, v)
  out = []
  for name in classnames:
    if class_key(name) not in by_key:
      raise ValueError(f"attribute file {file}: no entry for class {name!r} (key "
                       f"{name.replace(' ', '_')!r}); the file has {sorted(raw)}")
    k, sentences = by_key[class_key(name)]
    if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
      raise ValueError(f"attribute file {file}: class {k!r} must map to a list of sentences")
    kept = [s for s in sentences if len(s) >= MIN_CHARS]
    if not kept:
      raise ValueError(f"attribute file {file}: class {k!r} has no sentence of at least "
                       f"{MIN_CHARS} characters ({len(sentences)} given: {sentences[:3]})")
    out.append(kept)
  if len(raw) != len(classnames):
    extra = sorted(set(by_key) - {class_key(c) for c in classnames})
    raise ValueError(f"attribute file {file} has {len(raw)} classes but the dataset has "
                     f"{len(classnames)} ({list(classnames)}); not in the dataset: {extra}. "
                     f"The files must describe exactly the dataset's classes")
  return out


def sample(sentences: list[list[str]], m: int, rng: np.random.Generator,
           mode: str = "reference") -> list[list[str]]:
  """Per class: m draws as the reference (see module doc), or each distinct sentence once."""
  if mode not in SAMPLINGS:
    raise ValueError(f"config.method.attr_sampling={mode!r}: use one of {SAMPLINGS}")
  out = []
  for kept in sentences:
    if mode == "unique":
      out.append(list(dict.fromkeys(kept)))
    elif m < len(kept):
      out.append([kept[i] for i in rng.choice(len(kept), m, replace=False)])
    else:
      out.append([kept[i] for i in rng.choice(len(kept), m, replace=True)])
  return out


def token_lengths(tokenizer, texts) -> list[int]:
  """Tokens of each text with its start/end tokens, without truncation (both families)."""
  if isinstance(tokenizer, BPETokenizer):
    return [len(tokenizer.encode(clean(t).lower())) + 2 for t in texts]
  enc = tokenizer.hf([clean(t) for t in texts], truncation=False, padding=False)
  return [len(r) for r in enc["input_ids"]]


def check_lengths(tokenizer, file, classnames, sentences: list[list[str]]) -> None:
  """A sentence that the text tower would truncate is an error naming it."""
  limit = tokenizer.context_length
  for name, kept in zip(classnames, sentences):
    for text, n in zip(kept, token_lengths(tokenizer, kept)):
      if n > limit:
        raise ValueError(f"attribute file {file}: a sentence of class {name!r} has {n} tokens, "
                         f"more than the text tower's context of {limit} (it would be "
                         f"truncated): {text!r}")


def read_heads(directory, key: str, heads, classnames, tokenizer, m: int, seed: int,
               mode: str = "reference", sources=None) -> dict[str, list[list[str]]]:
  """Load, check and sample every head's file: {head: per class, the sentences used}.

  ``sources``: ``{head: (directory, file suffix)}`` for heads read from other files (the
  ablations' corrupted or replaced attributes: ``<directory>/<key>_<suffix>.json``). Each head
  draws from its own stream, seeded by (seed, head), so replacing one head's file leaves the
  other heads' sentences as they were (one shared stream, as the reference's Python ``random``,
  would shift them whenever the replacement keeps another number of sentences).
  """
  if not directory:
    raise ValueError("this method reads attribute sentences: set --config.method.attributes_dir "
                     "to a folder with <key>_{" + ",".join(heads) + "}.json (key: "
                     "--config.method.attributes_dataset)")
  if m < 1:
    raise ValueError(f"config.method.m={m}: draw at least one sentence per class")
  out = {}
  for head in heads:
    where, suffix = (sources or {}).get(head, (directory, head))
    kept = load(where, key, suffix, classnames)
    check_lengths(tokenizer, path(where, key, suffix), classnames, kept)
    out[head] = sample(kept, m, np.random.default_rng([seed, HEADS.index(head)]), mode)
  return out


def vocabulary_words(method_cfg) -> list[str]:
  """Words of the configured attribute files, so a random-weight model's generated vocabulary
  holds them as whole tokens (a character-level fallback would overflow the 77-token context).
  Empty when the method reads no attribute files; unreadable files are left to ``load``."""
  directory, key = method_cfg.get("attributes_dir", ""), method_cfg.get("attributes_dataset", "")
  if not directory or not key:
    return []
  words = []
  for head in HEADS:
    try:
      raw = json.loads(path(directory, key, head).read_text(encoding="utf-8"))
      words += [w for v in raw.values() for s in v for w in re.findall(r"[A-Za-z0-9]+", s)]
    except (OSError, ValueError, AttributeError, TypeError):
      continue
  return sorted(set(words))
