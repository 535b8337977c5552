"""The tokenizer files of a converted directory, per family, found at conversion time.

BiomedCLIP: the HuggingFace WordPiece files next to the weights (or ``--tokenizer DIR``), copied.
OpenAI CLIP: a byte-level BPE vocabulary written in biomedjax's layout (``biomedjax.models.bpe``)
from, in this order: an open_clip ``*.txt.gz`` merges file in the source folder, a HuggingFace
``vocab.json`` + ``merges.txt`` pair in it, or the ``bpe_simple_vocab_16e6.txt.gz`` shipped inside
the installed open_clip package (found without importing open_clip or torch). The converted
directory is then self-sufficient: loading it needs neither open_clip nor torch.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import shutil

from biomedjax.models import bpe, families
from biomedjax.models.config import CLIPConfig
from .openclip_config import ConversionError

OPENCLIP_BPE = "bpe_simple_vocab_16e6.txt.gz"


def installed_openclip_bpe() -> pathlib.Path | None:
  spec = importlib.util.find_spec("open_clip")
  for folder in (spec.submodule_search_locations or []) if spec else []:
    if (pathlib.Path(folder) / OPENCLIP_BPE).is_file():
      return pathlib.Path(folder) / OPENCLIP_BPE
  return None


def _special(tok_dir: pathlib.Path, key: str, default: str) -> str:
  for name in ("special_tokens_map.json", "tokenizer_config.json"):
    f = tok_dir / name
    if f.is_file():
      value = json.loads(f.read_text()).get(key)
      if isinstance(value, dict):
        value = value.get("content")
      if value:
        return value
  return default


def bpe_source(tok_dir: pathlib.Path) -> tuple[str, pathlib.Path]:
  """-> (kind, path) of the BPE vocabulary to use; an error says what was looked for."""
  gz = sorted(tok_dir.glob("*.txt.gz"))
  if gz:
    return "open_clip", gz[0]
  if (tok_dir / "vocab.json").is_file() and (tok_dir / "merges.txt").is_file():
    return "hf", tok_dir
  installed = installed_openclip_bpe()
  if installed:
    return "open_clip", installed
  raise ConversionError(f"{tok_dir}: no BPE vocabulary (an open_clip *.txt.gz, or vocab.json + "
                        f"merges.txt) and open_clip is not installed to provide {OPENCLIP_BPE}; "
                        "pass --tokenizer DIR")


def check_source(tok_dir: pathlib.Path, cfg: CLIPConfig) -> str:
  """Fails early (before the weights are read) if the tokenizer files are missing."""
  if cfg.family == "openai":
    kind, path = bpe_source(tok_dir)
    return f"{kind}:{path}"
  files = [n for n in families.of(cfg).tokenizer_files if (tok_dir / n).is_file()]
  if not {"vocab.txt", "tokenizer.json"} & set(files):
    what = (" (MedCLIP: the emilyalsentzer/Bio_ClinicalBERT folder)"
            if cfg.family == "medclip" else "")
    raise ConversionError(f"{tok_dir}: no vocab.txt or tokenizer.json (pass --tokenizer DIR"
                          f"{what})")
  return str(tok_dir)


def write_bert_tokenizer_config(out: pathlib.Path) -> None:
  """What ``AutoTokenizer.from_pretrained`` builds from a BERT folder without a
  tokenizer_config.json (Bio_ClinicalBERT's hub folder: config.json + vocab.txt), written out so
  the converted folder loads alone: ``BertTokenizer`` with its defaults (``do_lower_case=True``).
  MedCLIP's references call exactly that tokenizer (CalibPrompt modeling_medclip.py:25)."""
  (out / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "BertTokenizer", "do_lower_case": True}, indent=2))


def write(tok_dir: pathlib.Path, out: pathlib.Path, cfg: CLIPConfig) -> None:
  """Writes the tokenizer files into ``out`` and checks they load and fit the text tower."""
  out.mkdir(parents=True, exist_ok=True)
  if cfg.family == "openai":
    kind, path = bpe_source(tok_dir)
    if kind == "open_clip":
      bpe.write_openclip_vocab(path, out)
    else:
      bpe.write_hf_vocab(path / "vocab.json", path / "merges.txt", out,
                         _special(path, "bos_token", "<|startoftext|>"),
                         _special(path, "eos_token", "<|endoftext|>"))
  else:
    for name in families.of(cfg).tokenizer_files:
      if (tok_dir / name).is_file():
        shutil.copy2(tok_dir / name, out / name)
    if cfg.family == "medclip" and not (out / "tokenizer_config.json").is_file():
      write_bert_tokenizer_config(out)
  try:
    tok = families.load_tokenizer(out, cfg)
  except Exception as e:
    raise ConversionError(
        f"{tok_dir}: tokenizer files do not load ({type(e).__name__}: {e})") from e
  size = len(tok) if cfg.family == "openai" else len(tok.hf)
  if size > cfg.text.vocab_size:
    raise ConversionError(f"{tok_dir}: vocabulary has {size} tokens, the text tower only "
                          f"{cfg.text.vocab_size} embeddings")
  if tok.pad_id != cfg.text.pad_id:
    raise ConversionError(f"{tok_dir}: pad token id {tok.pad_id} != model pad_id {cfg.text.pad_id}")
