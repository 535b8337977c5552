"""MedCLIP-ViT and MedCLIP-ResNet against CalibPrompt's MedCLIP code
(tests/parity/reference_medclip.py: HF ``SwinModel`` or torchvision ``resnet50`` + ``BertModel``
with the reference's forward lines), random weights.

Full size, through the converter's command line, from the files a user downloads: the release's
``medclip-vit/pytorch_model.bin`` (transformers-4.x key names, with its buffers) and the
Bio_ClinicalBERT folder (config.json + vocab.txt). No --preset: the converter reads the
architecture from the tensors. One conversion serves every assertion.
"""

import numpy as np
import pytest
from PIL import Image

import biomedjax
from biomedjax.models import config as model_config
from convert import biomedclip as convert_cli
from tests.parity import clip_fixture as cf
from tests.parity import medclip_fixture as fx

pytestmark = pytest.mark.slow

TEXTS = ["A chest X-ray image of COVID patient", "A chest X-ray image of normal patient",
         "ground glass opacity in the lungs", "Chest " * 40]


def _convert(tmp_path_factory, **release):
  root = tmp_path_factory.mktemp("medclip")
  release, bert_dir, model = fx.make_release(root, full=True, **release)
  out = root / "converted"  # the converter's command line, in this process
  assert convert_cli.main(["--src", str(release), "--tokenizer", str(bert_dir), "--out",
                           str(out)]) == 0
  return bert_dir, model, out, biomedjax.load(out)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
  return _convert(tmp_path_factory, seed=5)


@pytest.fixture(scope="module")
def full_resnet(tmp_path_factory):
  """MedCLIP-ResNet's ``medclip-resnet/pytorch_model.bin``, converted without --preset."""
  return _convert(tmp_path_factory, seed=6, resnet=True)


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _max_rel(a, b):
  return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def _pixels(shared):
  """A real BTMRI PNG through the model's eval transform (when ../shared is there) + noise."""
  rng = np.random.default_rng(0)
  pixels = [rng.normal(size=(224, 224, 3)).astype(np.float32)]
  images = sorted((shared / "data/images").glob("*/images/*/*.png")) if shared else []
  return pixels, images[:1]


def test_config_manifest_and_tokens(full):
  bert_dir, _, out, m = full
  man = fx.manifest(out)
  assert m.cfg == model_config.medclip()  # sized from the tensors: Swin-T + Bio_ClinicalBERT
  assert man["family"] == "medclip" and man["source_model"] == "MedCLIP-ViT"
  assert man["parameters"] == {"visual": 27_912_570, "text": 108_112_896, "logit_scale": 1,
                               "total": 136_025_467}
  assert len(man["ignored_keys"]) == 12 + 3  # relative_position_index per block, position_ids,
  assert "text_model.model.pooler.dense.weight" in man["ignored_keys"]  # the unused pooler
  ids_ref, mask_ref = fx.reference_tokens(bert_dir, TEXTS)
  for length in (None, "bucket"):  # pads are averaged in: always the 25 tokens of the reference
    ids, mask = m.tokenize(TEXTS, length)
    np.testing.assert_array_equal(ids, ids_ref.numpy())
    np.testing.assert_array_equal(mask, mask_ref.numpy())
  assert mask[3].sum() == 25 and ids[3, -1] == 3  # truncated with [SEP] last


def _check_features(converted, request):
  """Image / text features (cosine > 0.99999) and the model's logits (rel 1e-4) of the converted
  model against the torch reference in eval mode, on noise and a real PNG."""
  bert_dir, model, _, m = converted
  try:
    shared = request.getfixturevalue("shared_dir")
  except pytest.skip.Exception:
    shared = None
  pixels, images = _pixels(shared)
  pixels += [m.preprocess(Image.open(p)) for p in images]
  pixels = np.stack(pixels)
  ids_ref, mask_ref = fx.reference_tokens(bert_dir, TEXTS)
  ids, mask = m.tokenize(TEXTS)
  img_ref, txt_ref, logits_ref = fx.torch_features(model, pixels, ids_ref, mask_ref)
  assert float(model.logit_scale.detach()) == pytest.approx(4.6052)  # the reference clamped its 4.9
  img, txt, logits = cf.encode_all(m, pixels, ids, mask)  # logits as CLIP.__call__: clamped
  assert _cos(img, img_ref).min() > 0.99999 and _max_rel(img, img_ref) < 1e-3
  assert _cos(txt, txt_ref).min() > 0.99999 and _max_rel(txt, txt_ref) < 1e-3
  assert _max_rel(logits, logits_ref) < 1e-4
  assert m.logit_scale == pytest.approx(np.exp(4.9), rel=1e-6)  # stored unclamped, as CalibPrompt's
  # trainers read it (coop_medclip.py:258); only the model's own logits clamp
  return len(pixels)


def test_features_and_logits_match_the_reference(full, request):
  _check_features(full, request)


def test_resnet_variant_converts_and_matches_the_reference(full_resnet, request):
  """MedCLIP-ResNet: the converter tells it from the ViT by its keys (torchvision's ``conv1`` /
  ``fc`` under ``vision_model.model``), sizes it from the tensors, keeps BatchNorm's running
  statistics (eval mode) and drops the step counters; features and logits as the reference."""
  _, model, out, m = full_resnet
  man = fx.manifest(out)
  assert m.cfg == model_config.medclip_resnet()
  assert man["family"] == "medclip" and man["source_model"] == "MedCLIP-ResNet"
  n_vision = sum(p.numel() for p in model.vision_model.parameters())  # 23.5M + fc 2048 x 512
  assert man["parameters"]["visual"] == n_vision == 24_556_608
  assert len(man["ignored_keys"]) == 53 + 3  # num_batches_tracked per BatchNorm, position_ids,
  assert "text_model.model.pooler.dense.weight" in man["ignored_keys"]  # the unused pooler
  bn = model.vision_model.model.layer3[2].bn2
  np.testing.assert_allclose(m.params["batch_stats"]["visual"]["layer3_2"]["bn2"]["var"],
                             bn.running_var.numpy(), rtol=1e-6)
  assert _check_features(full_resnet, request) >= 1

