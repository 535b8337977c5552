"""Tiny-preset conversion: open_clip model with random weights -> convert -> same outputs.

Seconds instead of minutes, so it runs the numerical mapping checks (layouts, qkv fusion, norms,
pooling, projection heads) on every commit; the full-size test repeats them at the real size.
"""

import numpy as np
import pytest
import torch

import biomedjax
from convert import biomedclip as conv
from tests.parity import openclip_fixture as fx

TEXTS = ["a photo of a glioma tumor.", "normal brain mri", "benign   tumour with cyst",
         "Chest X-Ray showing pneumonia &amp; lung opacity!"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  src, torch_model = fx.make_checkpoint(tmp_path_factory.mktemp("src"), "tiny", seed=1,
                                        hub_layout=False)
  out = tmp_path_factory.mktemp("out") / "tiny"
  assert conv.main(["--src", str(src), "--out", str(out), "--preset", "tiny"]) == 0
  modes = {p: p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")]}
  assert all(m == (0o755 if p.is_dir() else 0o644) for p, m in modes.items()), modes
  return src, torch_model, biomedjax.load(out)


def _torch_features(model, pixels_nhwc, ids):
  with torch.no_grad():
    img = model.encode_image(torch.from_numpy(np.asarray(pixels_nhwc)).permute(0, 3, 1, 2))
    txt = model.encode_text(torch.from_numpy(np.asarray(ids, np.int64)))
    out = model(torch.from_numpy(np.asarray(pixels_nhwc)).permute(0, 3, 1, 2),
                torch.from_numpy(np.asarray(ids, np.int64)))
  logits = out[2] * out[0] @ out[1].T if isinstance(out, tuple) else None
  return img.numpy(), txt.numpy(), logits.numpy()


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_tiny_features_and_logits_match_open_clip(tiny):
  src, torch_model, m = tiny
  pixels = np.random.default_rng(0).normal(size=(3, 224, 224, 3)).astype(np.float32)
  ids, mask = m.tokenize(TEXTS)
  ref_ids = fx.openclip_tokenizer(src, 256)(TEXTS).numpy()
  np.testing.assert_array_equal(ids, ref_ids)
  img_ref, txt_ref, logits_ref = _torch_features(torch_model, pixels, ids)
  img, txt = np.asarray(m.encode_image(pixels)), np.asarray(m.encode_text(ids, mask))
  # fp32 on both sides, "highest" matmul precision: only summation order differs.
  np.testing.assert_allclose(img, img_ref, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(txt, txt_ref, rtol=1e-4, atol=1e-5)
  assert _cos(img, img_ref).min() > 0.999999 and _cos(txt, txt_ref).min() > 0.999999
  np.testing.assert_allclose(np.asarray(m.logits(pixels, ids)), logits_ref, atol=1e-4)
  assert m.logit_scale == pytest.approx(np.exp(3.9), rel=1e-6)
