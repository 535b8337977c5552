"""Eval preprocessing vs open_clip's transform on PNG/JPEG files of odd sizes and modes."""

import io

import numpy as np
import open_clip
import pytest
from PIL import Image

from biomedjax.models import preprocess as pre


def _reference():
  return open_clip.image_transform(224, is_train=False, mean=pre.OPENAI_MEAN, std=pre.OPENAI_STD)


def _encoded(mode, size, fmt, seed):
  """A textured image (gradients + noise) of the given mode, written and re-read as a file."""
  w, h = size
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = (np.sin(xx / 7.0) + np.cos(yy / 11.0)) * 0.25 + 0.5 + rng.normal(0, 0.05, (h, w))
  if mode == "I;16":
    img = Image.fromarray((np.clip(base, 0, 1) * 65535).astype(np.uint16))
  elif mode == "L":
    img = Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8), "L")
  else:
    chans = [np.clip(base * f, 0, 1) for f in (1.0, 0.7, 0.4, 0.9)][:len(mode)]
    img = Image.fromarray((np.stack(chans, -1) * 255).astype(np.uint8), mode)
  buf = io.BytesIO()
  img.save(buf, fmt)
  buf.seek(0)
  return Image.open(buf)


CASES = [("RGB", (300, 225), "PNG"), ("RGB", (225, 301), "JPEG"), ("L", (517, 333), "PNG"),
         ("L", (224, 224), "JPEG"), ("RGBA", (250, 999), "PNG"), ("I;16", (480, 377), "PNG"),
         ("RGB", (97, 131), "PNG")]  # smaller than 224: upsampled


@pytest.mark.parametrize("mode,size,fmt", CASES)
def test_matches_open_clip_transform(mode, size, fmt):
  img = _encoded(mode, size, fmt, seed=hash((mode, size)) % 1000)
  ref = _reference()(img).numpy().transpose(1, 2, 0)
  ours = pre.preprocess(img)
  assert ours.shape == (224, 224, 3) and ours.dtype == np.float32
  assert np.abs(ours - ref).max() < 0.02


def test_real_medical_samples(shared_dir):
  # <dataset>/images/<class>/<file>.png: the first 10 of each data set (MRI and ultrasound)
  files = [f for d in sorted((shared_dir / "data" / "images").iterdir()) if d.is_dir()
           for f in sorted(d.rglob("*.png"))[:10]]
  if not files:
    pytest.skip("no sample images under shared/data/images")
  for f in files:
    img = Image.open(f)
    ref = _reference()(img).numpy().transpose(1, 2, 0)
    assert np.abs(pre.preprocess(img) - ref).max() < 0.02, f
