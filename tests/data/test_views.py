"""The harness's augmented views: crop scale (0.5, 1) + flip, seeded, in source order."""

import numpy as np
from PIL import Image

from biomedjax.data import transforms, views


def _image(w=60, h=40):
  rng = np.random.default_rng(0)
  return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_crop_then_flip_as_torchvision_orders_it():
  image = _image()
  flips = 0
  for seed in range(40):
    got = views.harness_train_image(image, np.random.default_rng(seed), 32)
    rng = np.random.default_rng(seed)  # replay: the box's draws, then the flip draw
    box = transforms.random_resized_crop_box(
        60, 40, lambda lo, hi: float(rng.uniform(lo, hi)),
        lambda lo, hi: int(rng.integers(lo, hi)), scale=(0.5, 1.0))
    assert box[2] * box[3] >= 0.5 * 60 * 40 * 0.9  # scale >= 0.5 (up to rounding and ratio)
    crop = np.asarray(transforms.resized_crop(image, box, 32))
    flip = rng.uniform() < 0.5
    flips += flip
    np.testing.assert_array_equal(got, crop[:, ::-1] if flip else crop)
  assert 10 < flips < 30


def test_encode_views_seeded_and_in_order():
  import io
  records = []
  for label in range(3):
    buf = io.BytesIO()
    _image(50 + label, 40).save(buf, format="PNG")
    records.append({"image": buf.getvalue(), "label": label, "path": f"img{label}.png"})

  def encode(images):  # mean pixel per channel: a stand-in tower
    return images.reshape(len(images), -1, 3).mean(1)

  f1, y = views.encode_views(records, encode, views=2, seed=1, batch_size=2, image_size=16)
  f2, _ = views.encode_views(records, encode, views=2, seed=1, batch_size=2, image_size=16)
  f3, _ = views.encode_views(records, encode, views=2, seed=2, batch_size=2, image_size=16)
  assert f1.shape == (2, 3, 3) and list(y) == [0, 1, 2]
  np.testing.assert_array_equal(f1, f2)
  assert not np.array_equal(f1[0], f1[1]) and not np.array_equal(f1, f3)
