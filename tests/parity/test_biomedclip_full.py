"""Full-size BiomedCLIP through the real CLI: open_clip (random weights) vs the converted model.

The checkpoint directory has the hub layout of the real one (open_clip_config.json naming the
PubMedBERT hub id, .bin weights, tokenizer files), so the converter takes the same path as for
``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``.
"""

import json

import numpy as np
import pytest
import torch

import biomedjax
from tests.parity import openclip_fixture as fx

pytestmark = pytest.mark.slow

TEXTS = ["a photo of a glioma tumor.", "a photo of a normal brain.",
         "an mri scan showing a pituitary tumour", "kidney stone " * 40]


@pytest.fixture(scope="module")
def full(full_checkpoint):
  return full_checkpoint


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _max_rel(a, b):
  return float(np.abs(a - b).max() / np.abs(b).max())


def test_manifest_counts_and_sha(full):
  src, _, out = full
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["parameters"]["total"] == 195_902_721
  assert manifest["parameters"]["visual"] + manifest["parameters"]["text"] + 1 == 195_902_721
  assert manifest["source"]["tensors"] == 351
  import hashlib
  assert manifest["source"]["sha256"] == hashlib.sha256(
      (src / "open_clip_pytorch_model.bin").read_bytes()).hexdigest()


def test_full_size_parity(full):
  src, torch_model, out = full
  m = biomedjax.load(out)  # a fresh load, as a user does
  pixels = np.random.default_rng(1).normal(size=(2, 224, 224, 3)).astype(np.float32)
  ids, _ = m.tokenize(TEXTS)
  np.testing.assert_array_equal(ids, fx.openclip_tokenizer(src, 256)(TEXTS).numpy())
  t_pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2)
  t_ids = torch.from_numpy(ids.astype(np.int64))
  with torch.no_grad():
    img_ref = torch_model.encode_image(t_pixels).numpy()
    txt_ref = torch_model.encode_text(t_ids).numpy()
    img_n, txt_n, scale = torch_model(t_pixels, t_ids)
    logits_ref = (scale * img_n @ txt_n.T).numpy()
  img, txt = np.asarray(m.encode_image(pixels)), np.asarray(m.encode_text(ids))
  logits = np.asarray(m.logits(pixels, ids))
  assert _cos(img, img_ref).min() > 0.99999 and _max_rel(img, img_ref) < 1e-3
  assert _cos(txt, txt_ref).min() > 0.99999 and _max_rel(txt, txt_ref) < 1e-3
  np.testing.assert_allclose(logits, logits_ref, atol=1e-2)


def test_full_size_text_features_do_not_depend_on_pad_length(full_model):
  texts = TEXTS[:3]
  at_256 = np.asarray(full_model.encode_text(*full_model.tokenize(texts)))
  for length in ("bucket", 48):
    short = np.asarray(full_model.encode_text(*full_model.tokenize(texts, length=length)))
    assert _cos(at_256, short).min() > 0.999999
