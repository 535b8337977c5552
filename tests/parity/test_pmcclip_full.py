"""Full-size PMC-CLIP (random weights) from the three files a user downloads, through the real
CLI, against the reference's PyTorch forward (``tests/parity/pmcclip_fixture.py``).

Eval mode on real BTMRI PNGs (the reference's own preprocessing, ``clip/pmcclip.py:17-40``), and
the reference's train mode: BiomedCoOp registers the whole wrapper with Dassl
(``biomedcoop_pmcclip.py:330``), whose ``run_epoch`` calls ``set_model_mode("train")``
(``dassl/engine/trainer.py:586-587, 203-210``), so the frozen ResNet normalises with batch
statistics and its running statistics drift; evaluation (``set_model_mode("eval")``, :446-448)
then uses the drifted ones. Compared: features per step, the running statistics after N steps
and the eval features with the drifted statistics.
"""

import copy
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
import torch
from PIL import Image

import biomedjax
from biomedjax.models import config as model_config
from biomedjax.models.clip import encode_image_train
from tests.parity import pmcclip_fixture as fx

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[2]
IMAGES = REPO.parent / "shared" / "data" / "images" / "BTMRI" / "images"
TEXTS = ["a photo of a glioma tumor.", "an mri scan showing a pituitary tumour",
         "normal brain &amp; no tumor", "kidney stone, " * 40]
TRAIN_STEPS = 2


@pytest.fixture(scope="module")
def full(tmp_path_factory):
  ckpt, tok, ref = fx.make_files(tmp_path_factory.mktemp("pmc_src"), "pmcclip", seed=5)
  out = tmp_path_factory.mktemp("pmc_out") / "pmcclip"
  run = subprocess.run([sys.executable, "-m", "convert", "--src", str(ckpt), "--tokenizer",
                        str(tok), "--out", str(out)], cwd=REPO, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  return ckpt, tok, ref, out, biomedjax.load(out)


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _rel(a, b):
  return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def _pngs(n):
  if not IMAGES.is_dir():
    pytest.skip("no real images under ../shared/data/images")
  return [Image.open(p) for p in sorted(IMAGES.rglob("*.png"))[:n]]


def _reference_pixels(images):
  """clip/pmcclip.py:17-40: Resize(224, BICUBIC), CenterCrop, RGB, ToTensor, Normalize."""
  from torchvision import transforms as T
  tf = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                  lambda im: im.convert("RGB"), T.ToTensor(),
                  T.Normalize((0.48145466, 0.4578275, 0.40821073),
                              (0.26862954, 0.26130258, 0.27577711))])
  return torch.stack([tf(im) for im in images])


def test_converted_pmcclip_matches_reference_on_real_pngs(full):
  ckpt, tok, ref, out, m = full
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["family"] == "pmcclip" and manifest["source_model"].startswith("PMC-CLIP")
  assert sorted(manifest["source"]["files"]) == sorted(
      ["image_encoder(resnet50).pth", "text_encoder.pth", "text_projection_layer.pth"])
  assert m.cfg == model_config.pmcclip()
  assert m.logit_scale == pytest.approx(np.exp(4.4292), rel=1e-6)
  images = _pngs(2)
  t_pixels = _reference_pixels(images)
  pixels = np.stack([m.preprocess(im) for im in images])
  np.testing.assert_allclose(pixels, t_pixels.permute(0, 2, 3, 1).numpy(), atol=2e-2)
  t_ids, t_mask = fx.tokenize(tok, TEXTS)
  ids, mask = m.tokenize(TEXTS)
  np.testing.assert_array_equal(ids, t_ids.numpy())  # raw text, no clean: "&amp;" kept
  np.testing.assert_array_equal(mask, t_mask.numpy())
  with torch.no_grad():
    img_ref = ref.image_features(t_pixels).numpy()
    txt_ref = ref.text_features(t_ids, t_mask).numpy()
    logits_ref = ref.logits(t_pixels, t_ids, t_mask).numpy()
  t_nhwc = t_pixels.permute(0, 2, 3, 1).numpy()
  img, txt = np.asarray(m.encode_image(t_nhwc)), np.asarray(m.encode_text(ids, mask))
  assert _cos(img, img_ref).min() > 0.99999 and _rel(img, img_ref) < 1e-4
  assert _cos(txt, txt_ref).min() > 0.99999 and _rel(txt, txt_ref) < 1e-4
  assert _rel(m.logits(t_nhwc, ids, mask), logits_ref) < 1e-4
  # The library's own preprocessing of the same PNGs gives the same predictions.
  own = np.asarray(m.logits(pixels, ids, mask))
  np.testing.assert_array_equal(own.argmax(1), logits_ref.argmax(1))


def test_train_mode_batchnorm_drift_matches_reference(full):
  ckpt, tok, ref, out, m = full
  images = _pngs(4)
  t_pixels = _reference_pixels(images)
  batches = [t_pixels, torch.flip(t_pixels, dims=[3])]
  params = m.params
  step = jax.jit(lambda p, x: encode_image_train(m.module, p, x))
  ref.train()  # what set_model_mode("train") does to the registered wrapper
  try:
    for x in batches[:TRAIN_STEPS]:
      with torch.no_grad():
        want = ref.image_features(x).numpy()
      got, params = step(params, x.permute(0, 2, 3, 1).numpy())
      assert _cos(got, want).min() > 0.99999 and _rel(got, want) < 1e-4
  finally:
    ref.eval()
  sd = ref.image_encoder.state_dict()
  stats = params["batch_stats"]["visual"]
  for flax_path, key in (("bn1", "bn1"), ("layer1_0/bn3", "layer1.0.bn3"),
                         ("layer4_2/bn3", "layer4.2.bn3"),
                         ("layer3_0/downsample_1", "layer3.0.downsample.1")):
    node = stats
    for part in flax_path.split("/"):
      node = node[part]
    for ours, theirs in (("mean", "running_mean"), ("var", "running_var")):
      want = sd[f"{key}.{theirs}"].numpy()
      assert _rel(node[ours], want) < 1e-4, (flax_path, ours)
  all_ours = jax.tree.leaves(stats)
  assert len(all_ours) == 2 * sum(k.endswith("running_mean") for k in sd)
  # Evaluation afterwards uses the drifted statistics, in both.
  with torch.no_grad():
    want = ref.image_features(t_pixels).numpy()
  drifted = copy.copy(m)  # shares m's jitted functions: no recompilation
  drifted.params = params
  got = np.asarray(drifted.encode_image(t_pixels.permute(0, 2, 3, 1).numpy()))
  assert _cos(got, want).min() > 0.99999 and _rel(got, want) < 1e-4
  assert _cos(got, np.asarray(m.encode_image(t_pixels.permute(0, 2, 3, 1).numpy()))).min() < 0.9999
