"""Writes a random-weight MedCLIP as a user downloads it: the release folder
(``medclip-vit/pytorch_model.bin``, CalibPrompt docs/MODELS.md; ``medclip-resnet/`` for the ResNet
variant, the folder ``MedCLIPModel.from_pretrained`` defaults to) and a Bio_ClinicalBERT folder
(``config.json`` + ``vocab.txt``, the files ``AutoTokenizer`` reads from the hub).
"""

from __future__ import annotations

import json
import pathlib

import torch

from tests.parity import reference_medclip as ref

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WORDS = ("a an the of with in and chest x ray X - . , image patient normal covid COVID pneumonia "
         "lung lungs opacity Chest ground glass ##s ##ed ##ing photo of glioma meningioma "
         "pituitary tumor brain _").split()


def write_bert_folder(out: pathlib.Path, bert_cfg: dict) -> pathlib.Path:
  """Bio_ClinicalBERT's hub files: config.json + a cased vocab.txt (no tokenizer_config.json,
  as the hub folder has none); the vocabulary fills the embedding table."""
  from transformers import BertConfig
  out.mkdir(parents=True, exist_ok=True)
  tokens = list(SPECIALS) + sorted(set(WORDS))
  tokens += [f"[unused{i}]" for i in range(bert_cfg["vocab_size"] - len(tokens))]
  (out / "vocab.txt").write_text("\n".join(tokens) + "\n")
  BertConfig(**bert_cfg).save_pretrained(str(out))
  return out


def make_release(out: pathlib.Path, full: bool = False, seed: int = 0, logit_scale: float = 4.9,
                 resnet: bool = False):
  """-> (release folder, Bio_ClinicalBERT folder, torch MedCLIP in eval mode).

  ``logit_scale`` above 4.6052 so the reference's clamp is exercised. ``resnet``: MedCLIP-ResNet
  (torchvision resnet50, always full size) instead of the Swin."""
  out = pathlib.Path(out)
  swin, bert = (ref.SWIN_TINY, ref.BIO_CLINICAL_BERT) if full else (ref.TINY_SWIN, ref.TINY_BERT)
  torch.manual_seed(seed)
  model = ref.MedCLIP(None if resnet else swin, bert)
  ref.perturb_(model, seed, logit_scale)
  model.eval()
  release = out / ("medclip-resnet" if resnet else "medclip-vit")
  release.mkdir(parents=True, exist_ok=True)
  torch.save(ref.release_state_dict(model), release / "pytorch_model.bin")
  bert_dir = write_bert_folder(out / "Bio_ClinicalBERT", bert)
  return release, bert_dir, model


def reference_tokens(bert_dir: pathlib.Path, texts, max_length: int = 25):
  """CalibPrompt's tokenization (coop_medclip.py:90, zsclip.py:76-82)."""
  from transformers import AutoTokenizer
  tok = AutoTokenizer.from_pretrained(str(bert_dir))
  enc = tok(list(texts), padding="max_length", max_length=max_length, truncation=True,
            return_tensors="pt")
  return enc["input_ids"], enc["attention_mask"]


def manifest(out: pathlib.Path) -> dict:
  return json.loads((pathlib.Path(out) / "manifest.json").read_text())


def torch_features(model, pixels_nhwc, ids, mask):
  """(image features, text features, logits) of the torch reference, unnormalised features."""
  t_pixels = torch.from_numpy(pixels_nhwc).permute(0, 3, 1, 2)
  with torch.no_grad():
    img = model.vision_model(t_pixels).numpy()
    txt = model.text_model(ids, mask).numpy()
    logits = model(ids, t_pixels, mask).numpy()
  return img, txt, logits
