"""Full-size OpenAI CLIP ViT-B/16 through the real CLI: open_clip ``ViT-B-16-quickgelu`` (random
weights, the hub folder layout of ``timm/vit_base_patch16_clip_224.openai``) vs the converted model.
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import torch

import biomedjax
from biomedjax.models import config as model_config
from tests.parity import clip_fixture as fx

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[2]
TEXTS = ["a photo of a glioma tumor.", "a photo of a normal brain.",
         "an mri scan showing a pituitary tumour", "kidney stone, " * 40]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
  src, torch_model = fx.make_openclip_checkpoint(tmp_path_factory.mktemp("clip_src"),
                                                 "clip_vit_b16", seed=3)
  out = tmp_path_factory.mktemp("clip_out") / "clip_vit_b16"
  run = subprocess.run([sys.executable, "-m", "convert", "--src", str(src), "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  return src, torch_model, out


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _max_rel(a, b):
  return float(np.abs(a - b).max() / np.abs(b).max())


def test_full_size_clip_parity(full):
  src, torch_model, out = full
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["family"] == "openai" and manifest["source"]["tensors"] == 302
  assert manifest["parameters"] == {"visual": 86_192_640, "text": 63_428_096, "logit_scale": 1,
                                    "total": 149_620_737}
  m = biomedjax.load(out)
  assert m.cfg == model_config.clip_vit_b16()  # the preset is what open_clip's config describes
  pixels = np.random.default_rng(1).normal(size=(2, 224, 224, 3)).astype(np.float32)
  ids, mask = m.tokenize(TEXTS)
  np.testing.assert_array_equal(ids, open_clip.tokenize(TEXTS).numpy())
  assert ids[3, -1] == 49407 and mask[3].sum() == 77
  t_pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2)
  t_ids = torch.from_numpy(ids.astype(np.int64))
  with torch.no_grad():
    img_ref = torch_model.encode_image(t_pixels).numpy()
    txt_ref = torch_model.encode_text(t_ids).numpy()
    logits_ref = torch_model.get_logits(t_pixels, t_ids)[0].numpy()
  img, txt = np.asarray(m.encode_image(pixels)), np.asarray(m.encode_text(ids, mask))
  logits = np.asarray(m.logits(pixels, ids, mask))
  assert _cos(img, img_ref).min() > 0.99999 and _max_rel(img, img_ref) < 1e-3
  assert _cos(txt, txt_ref).min() > 0.99999 and _max_rel(txt, txt_ref) < 1e-3
  np.testing.assert_allclose(logits, logits_ref, atol=1e-2)
  short = np.asarray(m.encode_text(*m.tokenize(TEXTS[:3], length="bucket")))
  assert _cos(short, txt[:3]).min() > 0.999999
