"""biomedjax.studies.gradcam without PyTorch: resize, overlays, the CLI (zero-shot) and a real image.

Map values against pytorch-grad-cam are checked in tests/parity/test_gradcam_parity.py.
"""

import numpy as np
import pytest
from PIL import Image

from biomedjax.studies import gradcam
from biomedjax.models import biomedclip as bc
from biomedjax.models import config as model_config
from biomedjax.models.vocab import write_vocab


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A converted-layout directory of the tiny preset with random weights."""
  out = tmp_path_factory.mktemp("tiny_model")
  cfg = model_config.tiny()
  (out / bc.CONFIG_FILE).write_text(cfg.to_json())
  bc.save_params(out / bc.PARAMS_DIR, bc.init_params(cfg, 3))
  write_vocab(out / bc.TOKENIZER_DIR, "cardiomegaly pleural effusion".split(),
              size=cfg.text.vocab_size, context_length=cfg.text.context_length)
  return out


def test_bilinear_resize_is_cv2_inter_linear():
  m = np.array([[[0.0, 1.0], [2.0, 3.0]]])
  out = gradcam.bilinear_resize(m, (4, 4))[0]
  # source x = (dst + 0.5) / 2 - 0.5 -> -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
  np.testing.assert_allclose(out[0], [0.0, 0.25, 0.75, 1.0], atol=1e-7)
  np.testing.assert_allclose(out[:, 0], [0.0, 0.5, 1.5, 2.0], atol=1e-7)
  const = gradcam.bilinear_resize(np.full((1, 14, 14), 0.3), (224, 224))
  np.testing.assert_allclose(const, 0.3, atol=1e-6)


def test_scale_maps_is_min_max_with_eps():
  m = np.array([[[1.0, 3.0], [2.0, 5.0]]])
  np.testing.assert_allclose(gradcam.scale_maps(m)[0], np.array([[0, 2], [1, 4]]) / (4 + 1e-7),
                             rtol=1e-6)
  assert not gradcam.scale_maps(np.zeros((1, 3, 3))).any()  # a zero map stays zero


def _image(tmp_path, size=(300, 200)):
  rng = np.random.default_rng(0)
  path = tmp_path / "cxr.png"
  Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)).save(path)
  return path


def test_cli_zero_shot_writes_overlays(model_dir, tmp_path):
  image = _image(tmp_path)  # 300 x 200: the crop and the squashed view differ
  out = tmp_path / "crop.png"
  assert gradcam.main(["--model", str(model_dir), "--image", str(image), "--label",
                       "Cardiomegaly", "--out", str(out), "--blocks", "-2",
                       "--save-map", str(tmp_path / "map.npy")]) == 0
  crop = np.asarray(Image.open(out))
  cam = np.load(tmp_path / "map.npy")
  assert cam.shape == (224, 224) and cam.min() >= 0 and cam.max() <= 1 and np.ptp(cam) > 0.5
  # The default overlay is the map drawn on exactly the pixels the model saw.
  pil = Image.open(image)
  np.testing.assert_array_equal(crop, gradcam.heat_overlay(gradcam.model_view(pil, 224), cam))
  squashed = gradcam.overlay_image(pil, cam, 224, "squashed")
  full = gradcam.overlay_image(pil, cam, 224, "full")
  assert crop.shape == squashed.shape == (224, 224, 3) and full.shape == (200, 300, 3)
  assert not np.array_equal(crop, squashed)
  # "full": the (coloured) heat map covers the crop's region, x 50..250 of 300, and nothing else
  # (the image is grey, so uncoloured pixels have R == B).
  coloured = (full[..., 0] != full[..., 2]).any(axis=0)
  assert not coloured[:50].any() and not coloured[250:].any() and coloured[50:250].all()
  with pytest.raises(ValueError, match="overlay='tilted'"):
    gradcam.overlay_image(pil, cam, 224, "tilted")


def test_cli_errors_are_named(model_dir, tmp_path, capsys):
  image = _image(tmp_path)
  assert gradcam.main(["--model", str(tmp_path / "nope"), "--image", str(image), "--label", "x",
                       "--out", str(tmp_path / "o.png")]) == 2
  assert "nope/config.json not found" in capsys.readouterr().err
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"not a png")
  assert gradcam.main(["--model", str(model_dir), "--image", str(bad), "--label", "x",
                       "--out", str(tmp_path / "o.png")]) == 2
  assert "bad.png: cannot read image" in capsys.readouterr().err
  assert not (tmp_path / "o.png").exists()


def test_real_image_overlay_has_the_image_size(model_dir, shared_dir, tmp_path):
  images = sorted((shared_dir / "data/images").glob("*/images/*/*.png"))
  if not images:
    pytest.skip("no real images under shared/data/images")
  out = tmp_path / "real.png"
  assert gradcam.main(["--model", str(model_dir), "--image", str(images[0]), "--label",
                       "Pleural Effusion", "--out", str(out), "--blocks", "-2",
                       "--overlay", "full"]) == 0
  assert Image.open(out).size == Image.open(images[0]).size
