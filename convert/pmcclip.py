"""PMC-CLIP, from the files BiomedCoOp downloads, into a biomedjax model directory (``pmcclip``).

  python -m convert --src DIR --tokenizer BIOMEDBERT_DIR --out OUT

``DIR`` holds the three files of huggingface.co/datasets/axiong/pmc_oa that BiomedCoOp fetches
into ``clip/checkpoints`` (``trainers/BiomedCoOp/biomedcoop_pmcclip.py:33-37``):

* ``image_encoder(resnet50).pth``: a ``ModifiedResNet(layers=[3,4,6,3], output_dim=768, heads=8,
  image_size=224, width=64)`` state dict (``biomedcoop_pmcclip.py:287-288``);
* ``text_encoder.pth``: a HuggingFace ``BertModel`` state dict, loaded into
  ``AutoModel.from_pretrained('microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract')`` (:291-292);
* ``text_projection_layer.pth``: a bare (768, 768) tensor; text features are
  ``pooler_output @ text_projection_layer`` (:65-67, :295).

``BIOMEDBERT_DIR`` holds that BiomedBERT's tokenizer files (``vocab.txt``, ...; the reference
calls ``AutoTokenizer.from_pretrained`` on it, :81, padding to ``max_length=77``); a
``config.json`` in it, as in the downloaded HF model folder, gives the BERT sizes (otherwise
BERT-base's). The logit scale is no file's: the reference hard-codes ``self.logit_scale = 4.4292``
and multiplies by ``math.exp`` of it (:172, :203), and so does the converted model.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib

import numpy as np

from biomedjax.models import config as model_config
from biomedjax.models.config import CLIPConfig, TextConfig
from . import mapping, sources, tokenizer_files
from .openclip_config import ConversionError, bert_config

IMAGE, TEXT, PROJECTION = ("image_encoder(resnet50).pth", "text_encoder.pth",
                           "text_projection_layer.pth")
FILES = (IMAGE, TEXT, PROJECTION)
URL = "https://huggingface.co/datasets/axiong/pmc_oa/resolve/main/"
SOURCE_MODEL = "PMC-CLIP (axiong/pmc_oa, RN50 + BiomedBERT-base-uncased-abstract)"


def is_source(src: str) -> bool:
  """A folder holding any of PMC-CLIP's three files (the missing ones are then an error)."""
  path = pathlib.Path(src)
  return path.is_dir() and any((path / name).is_file() for name in FILES)


def _read_tensor(path: pathlib.Path) -> np.ndarray:
  """``text_projection_layer.pth``: one bare tensor, read with torch's restricted unpickler."""
  try:
    import torch
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
  except ImportError as e:
    raise ConversionError(f"{path}: reading .pth needs torch (requirements-dev.txt)") from e
  except Exception as e:
    raise ConversionError(f"{path}: not a readable PyTorch file ({type(e).__name__}: "
                          f"{str(e).splitlines()[0]})") from e
  if isinstance(obj, torch.nn.Parameter):
    obj = obj.data
  if not isinstance(obj, torch.Tensor) or obj.ndim != 2:
    raise ConversionError(f"{path}: holds a {type(obj).__name__}"
                          f"{tuple(obj.shape) if isinstance(obj, torch.Tensor) else ''}, not the "
                          "(width, embed_dim) projection matrix")
  return obj.detach().to(torch.float32).numpy()


def read_state_dict(src_dir: pathlib.Path) -> dict[str, np.ndarray]:
  """The three files as one state dict: ``visual.*``, ``text.*``, ``text_projection``, and the
  reference's constant ``logit_scale``."""
  missing = [n for n in FILES if not (src_dir / n).is_file()]
  if missing:
    raise ConversionError(f"{src_dir}: missing {', '.join(missing)}; download "
                          + ", ".join(URL + n for n in missing) + f" into {src_dir}")
  sd = {f"visual.{k}": v for k, v in sources.read_state_dict(src_dir / IMAGE).items()}
  sd.update({f"text.{k}": v for k, v in sources.read_state_dict(src_dir / TEXT).items()})
  sd["text_projection"] = _read_tensor(src_dir / PROJECTION)
  sd["logit_scale"] = np.asarray(model_config.PMCCLIP_LOGIT_SCALE, np.float32)
  return sd


def resolve_config(tok_dir: pathlib.Path, projection: np.ndarray, preset: str | None,
                   model_config_file: str | None) -> CLIPConfig:
  """--model-config / --preset, else PMC-CLIP's architecture with the BERT sizes of
  ``tok_dir/config.json`` (when present) and the projection's output width as embed_dim."""
  if model_config_file or preset:
    from convert.biomedclip import resolve_config as generic
    cfg = generic(tok_dir, preset, model_config_file)
    if cfg.family != "pmcclip":
      raise ConversionError(f"--preset/--model-config names family {cfg.family!r}; PMC-CLIP's "
                            "files need a 'pmcclip' config (e.g. --preset pmcclip)")
    return cfg
  cfg = model_config.pmcclip()
  text = cfg.text
  if (tok_dir / "config.json").is_file():
    b = bert_config(str(tok_dir), str(tok_dir / "config.json"))
    text = TextConfig(vocab_size=b["vocab_size"], width=b["hidden_size"],
                      depth=b["num_hidden_layers"], heads=b["num_attention_heads"],
                      mlp_dim=b["intermediate_size"], max_positions=b["max_position_embeddings"],
                      type_vocab_size=b.get("type_vocab_size", 2),
                      ln_eps=b.get("layer_norm_eps", 1e-12), pad_id=b.get("pad_token_id", 0),
                      hidden_dropout=b.get("hidden_dropout_prob", 0.1),
                      attention_dropout=b.get("attention_probs_dropout_prob", 0.1),
                      context_length=77, proj="pooler")
  return dataclasses.replace(cfg, text=text, embed_dim=int(projection.shape[1]))


def convert(src: str, out: pathlib.Path, force: bool = False, tokenizer_dir: str | None = None,
            preset: str | None = None, model_config_file: str | None = None,
            name: str | None = None) -> pathlib.Path:
  from .biomedclip import _count, _versions, map_state_dict, write_model
  src_dir = pathlib.Path(src)
  if not tokenizer_dir:
    raise ConversionError(f"--src {src} is PMC-CLIP, whose files hold no tokenizer: pass "
                          "--tokenizer DIR with microsoft/BiomedNLP-BiomedBERT-base-uncased-"
                          "abstract's tokenizer files (vocab.txt, tokenizer_config.json)")
  tok_dir = pathlib.Path(tokenizer_dir)
  state_dict = read_state_dict(src_dir)
  cfg = resolve_config(tok_dir, state_dict["text_projection"], preset, model_config_file)
  tok_source = tokenizer_files.check_source(tok_dir, cfg)
  params = map_state_dict(state_dict, cfg, str(src_dir), "pmcclip")
  ignored = mapping.ignored_keys(cfg, "pmcclip")
  manifest = {
      "format": "biomedjax-clip", "mapping_version": mapping.MAPPING_VERSION,
      "family": cfg.family, "source_layout": "pmcclip", "tokenizer_source": tok_source,
      "source_model": name or SOURCE_MODEL,
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "source": {"files": {n: {"path": str(src_dir / n), "sha256": sources.sha256(src_dir / n)}
                           for n in FILES},
                 "tensors": len(state_dict) - 1,
                 "logit_scale": "4.4292, the reference's constant "
                                "(trainers/BiomedCoOp/biomedcoop_pmcclip.py:172)"},
      "ignored_keys": sorted(set(state_dict) & set(ignored)),
      "parameters": {"visual": _count(params["visual"]), "text": _count(params["text"]),
                     "logit_scale": 1, "batch_stats": _count(params["batch_stats"]),
                     "total": _count(params)},
      "versions": _versions(),
  }
  return write_model(out, cfg, tok_dir, params, manifest)
