"""Bring-your-own-data readers (folders, CSV), the synthetic generator, real samples (IU-Xray:
test_iuxray.py)."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from biomedjax.data import readers
from biomedjax.data import sources
from biomedjax.data import splits
from biomedjax.data import transforms
from tests.data.conftest import write_png


def test_class_folders(tmp_path):
  for c, n in (("zeta", 2), ("alpha", 3)):
    for i in range(n):
      write_png(tmp_path / c / f"{i}.jpg", i)
  (tmp_path / "alpha" / "notes.txt").write_text("not an image")
  examples, names = readers.read_class_folders(tmp_path)
  assert names == ["alpha", "zeta"]
  assert [(e.path.split("/")[-2], e.label) for e in examples] == [("alpha", 0)] * 3 + [("zeta", 1)] * 2
  (tmp_path / "empty").mkdir()
  with pytest.raises(splits.SplitError, match="empty: empty class folder"):
    readers.read_class_folders(tmp_path)


def _write_csv(path, header, rows):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  return path


def test_csv_single_and_multi_label(tmp_path):
  for i in range(3):
    write_png(tmp_path / f"{i}.png", i)
  f = _write_csv(tmp_path / "l.csv", ["path", "label", "a", "b"],
                 [["0.png", "cat", 1, 0], ["1.png", "dog", 1, 1], ["2.png", "1", 0, 0]])
  single = readers.read_csv(f, label_column="label", classnames=["cat", "dog"])
  assert [e.label for e in single] == [0, 1, 1] and single[1].origin.endswith("l.csv:3")
  multi = readers.read_csv(f, label_columns=["a", "b"])
  np.testing.assert_array_equal(np.stack([e.label for e in multi]), [[1, 0], [1, 1], [0, 0]])
  bad = _write_csv(tmp_path / "bad.csv", ["path", "a"], [["0.png", 1], ["1.png", 2]])
  with pytest.raises(splits.SplitError, match=r"bad.csv:3: column 'a' must be 0 or 1"):
    readers.read_csv(bad, label_columns=["a"])
  missing = _write_csv(tmp_path / "m.csv", ["path", "label"], [["0.png", 0], ["9.png", 0]])
  with pytest.raises(splits.SplitError, match=r"m.csv:3: image '9.png' not found"):
    readers.read_csv(missing, label_column="label")
  with pytest.raises(splits.SplitError, match=r"m.csv: class\(es\) with no image: \['b'\]"):
    readers.read_csv(missing, label_column="label", classnames=["a", "b"], check_files=False)


def test_validate_images_skips_with_count(tmp_path, caplog):
  good = write_png(tmp_path / "good.png")
  (tmp_path / "bad.png").write_bytes(good.read_bytes()[:40])
  examples = [readers.Example(str(tmp_path / n), 0, f"list:{i + 1}")
              for i, n in enumerate(["good.png", "bad.png"])]
  with pytest.raises(transforms.BadImageError, match="list:2: .*bad.png"):
    sources.validate_images(examples)
  assert sources.validate_images(examples, skip_bad_images=True) == examples[:1]
  assert "skipped 1 unreadable image(s) of 2" in caplog.text


def test_synthetic_generator_cli(tmp_path):
  subprocess.run([sys.executable, "-m", "biomedjax.data.synthetic", "--out", str(tmp_path),
                  "--classes", "4", "--per-class", "16"], check=True,
                 cwd=__import__("pathlib").Path(__file__).resolve().parents[2])
  data = json.loads((tmp_path / "split_synthetic.json").read_text())
  assert sum(len(v) for v in data.values()) == 64
  parsed = splits.read_split_file(tmp_path / "split_synthetic.json", image_root=tmp_path)
  means = {}
  for it in parsed["train"]:
    means.setdefault(it.label, []).append(np.asarray(Image.open(tmp_path / it.path)).mean((0, 1)))
  centroids = np.stack([np.mean(means[c], 0) for c in range(4)])
  dists = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
  assert dists[~np.eye(4, dtype=bool)].min() > 10, "class colours are distinguishable"


def test_real_image_samples_decode(shared_dir):
  images = shared_dir / "data/images"
  if not images.is_dir():
    pytest.skip(f"{images} absent")
  files = sorted(p for p in images.rglob("*") if p.suffix.lower() in splits.IMAGE_EXTENSIONS)[:20]
  if not files:
    pytest.skip("no image samples")
  for f in files:
    image = transforms.decode(f.read_bytes(), str(f))
    assert transforms.train_image(image, np.random.default_rng(0), 64).shape == (64, 64, 3)
