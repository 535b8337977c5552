"""Train/eval transforms against torchvision (the reference's own code path)."""

import io

import numpy as np
import pytest
from PIL import Image

from biomedjax.data import transforms
from biomedjax.models import preprocess as pp
from tests.data.conftest import png_bytes

torch = pytest.importorskip("torch")
T = pytest.importorskip("torchvision.transforms")
F = pytest.importorskip("torchvision.transforms.functional")


def torch_stream_uniform(lo, hi):
  return torch.empty(1).uniform_(lo, hi).item()


def torch_stream_randint(lo, hi):
  return torch.randint(lo, hi, size=(1,)).item()


@pytest.mark.parametrize("size", [(300, 200), (64, 512), (512, 64), (33, 35)])
def test_crop_box_follows_torchvision_get_params(size):
  """Fed torch's own random stream, the box logic must equal torchvision's, attempt by attempt."""
  image = Image.new("RGB", size)
  width, height = size
  for seed in range(200):
    torch.manual_seed(seed)
    expected = T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
    torch.manual_seed(seed)
    got = transforms.random_resized_crop_box(width, height, torch_stream_uniform,
                                             torch_stream_randint)
    assert got == tuple(expected), (size, seed)


@pytest.mark.parametrize("size", [(1000, 10), (10, 1000), (50, 50)])
def test_fallback_after_ten_failed_attempts(size):
  """Uniforms that always ask for too large a crop force torchvision's central fallback."""
  image = Image.new("RGB", size)
  torch.manual_seed(0)
  expected = T.RandomResizedCrop.get_params(image, [2.0, 2.0], [3 / 4, 4 / 3])  # never fits
  got = transforms.random_resized_crop_box(size[0], size[1], lambda lo, hi: hi,
                                           lambda lo, hi: lo, scale=(2.0, 2.0))
  assert got == tuple(expected)


def test_resized_crop_pixels_match_torchvision():
  rng = np.random.default_rng(0)
  image = Image.fromarray(rng.integers(0, 255, (180, 240, 3), dtype=np.uint8))
  to_tensor = T.Compose([T.ToTensor(), T.Normalize(pp.OPENAI_MEAN, pp.OPENAI_STD)])
  for box in [(10, 20, 100, 150), (0, 0, 180, 240), (50, 7, 31, 45)]:
    expected = to_tensor(F.resized_crop(image, *box, [224, 224],
                                        T.InterpolationMode.BICUBIC)).permute(1, 2, 0).numpy()
    got = pp.normalize(np.asarray(transforms.resized_crop(image, box, 224)))
    assert got.shape == (224, 224, 3)
    np.testing.assert_allclose(got, expected, atol=0.02)


def test_train_image_is_seeded():
  image = transforms.decode(png_bytes(1, (50, 40)), "x")
  a = transforms.train_image(image, np.random.default_rng(5), 32)
  b = transforms.train_image(image, np.random.default_rng(5), 32)
  c = transforms.train_image(image, np.random.default_rng(6), 32)
  assert a.shape == (32, 32, 3) and a.dtype == np.uint8  # the model normalises on the device
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_decode_converts_to_rgb_and_names_bad_files():
  buf = io.BytesIO()
  Image.new("L", (5, 5), 7).save(buf, "PNG")
  assert transforms.decode(buf.getvalue(), "grey.png").mode == "RGB"
  good = png_bytes(0, (64, 64))
  with pytest.raises(transforms.BadImageError, match="truncated.png: cannot decode"):
    transforms.decode(good[:len(good) // 2], "truncated.png")
  with pytest.raises(transforms.BadImageError, match="junk.png: cannot decode"):
    transforms.decode(b"not an image", "junk.png")


def test_eval_transform_is_preprocess():
  data = png_bytes(3, (90, 60))
  record = {"image": data, "label": 1, "path": "p"}
  out = transforms.EvalTransform(32).map(record)
  assert out["image"].dtype == np.uint8  # 1 byte per channel to the device, not 4
  expected = pp.preprocess(Image.open(io.BytesIO(data)), 32)
  np.testing.assert_array_equal(pp.normalize(out["image"]), expected)
  assert out["mask"] and out["label"] == 1
  pad = transforms.EvalTransform(32).map({"image": b"", "label": 0, "path": "", "padding": True})
  assert not pad["mask"] and not pad["image"].any()


def test_random_flip_mirrors_the_crop_half_the_time():
  record = {"image": png_bytes(2, (50, 40)), "label": 0, "path": "x"}
  flips = 0
  for seed in range(20):
    plain = transforms.TrainTransform(32).random_map(record, np.random.default_rng(seed))["image"]
    out = transforms.TrainTransform(32, flip=True).random_map(record,
                                                              np.random.default_rng(seed))
    same = np.array_equal(out["image"], plain)
    assert same or np.array_equal(out["image"], plain[:, ::-1])
    flips += not same
  assert 4 <= flips <= 16


@pytest.mark.parametrize("size", [(300, 200), (120, 400), (192, 250)])
def test_resize_first_is_torchvision_resize_then_random_resized_crop(size):
  """VR train transform: Resize(S, bicubic) -> RandomResizedCrop(S) -> flip, fed torch's
  random stream, equals torchvision's Compose on the same PIL image."""
  image = Image.fromarray(np.random.default_rng(1).integers(0, 256, size[::-1] + (3,),
                                                            np.uint8))
  s = 48
  resized = transforms.resize_short_side(image, s)
  expected_resized = T.Resize(s, interpolation=T.InterpolationMode.BICUBIC)(image)
  np.testing.assert_array_equal(np.asarray(resized), np.asarray(expected_resized))
  for seed in range(5):
    torch.manual_seed(seed)
    expected = T.RandomResizedCrop(s, interpolation=T.InterpolationMode.BICUBIC)(
        expected_resized)
    torch.manual_seed(seed)
    box = transforms.random_resized_crop_box(resized.width, resized.height,
                                             torch_stream_uniform, torch_stream_randint)
    np.testing.assert_array_equal(np.asarray(transforms.resized_crop(resized, box, s)),
                                  np.asarray(expected))
  record = {"image": png_bytes(2, (50, 40)), "label": 0, "path": "x"}
  rng = lambda: np.random.default_rng(3)
  out = transforms.TrainTransform(16, resize_first=True).random_map(record, rng())["image"]
  direct = transforms.train_image(transforms.resize_short_side(
      transforms.decode(record["image"], "x"), 16), rng(), 16)
  assert out.shape == (16, 16, 3)
  np.testing.assert_array_equal(out, direct)
