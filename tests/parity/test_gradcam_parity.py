"""Grad-CAM maps: biomedjax.studies.gradcam vs a PyTorch transcription of pytorch-grad-cam (the notebook's
GradCAMCustom) on a random open_clip BiomedCLIP; zero-shot and head targets, one and two blocks."""

import numpy as np
import pytest
import torch

from biomedjax.studies import gradcam
from tests.parity import method_fixture
from tests.parity import reference_gradcam as ref

LABELS = ["glioma tumor", "normal brain", "kidney cyst"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  torch_model, tokenizer, backbone, params = method_fixture.build(
      tmp_path_factory.mktemp("gradcam"), "tiny", seed=4)
  return torch_model, tokenizer, backbone, params


def _reference_maps(model, pixels, make_target, classes, blocks):
  """One image at a time, as the notebook; returns (B, H, W)."""
  layers = [model_visual_blocks(model)[b].attn.proj for b in blocks]
  out = []
  for x, c in zip(pixels, classes):
    cam = ref.GradCAMCustom(model, layers, reshape_transform=ref.vit_reshape)
    t = torch.from_numpy(x[None]).permute(0, 3, 1, 2).contiguous()
    out.append(cam(t, [make_target(c)])[0])
    cam.activations_and_grads.release()
  return np.stack(out)


def model_visual_blocks(model):
  visual = model.visual if hasattr(model, "visual") else model
  return visual.trunk.blocks


def test_zero_shot_maps_match_pytorch_grad_cam(tiny):
  """Two blocks: the per-layer scaling and the mean over layers. (The last block contributes a
  zero map: its patch outputs never reach the [CLS] token, so their gradients are zero.)"""
  blocks = [-2, -1]
  torch_model, tokenizer, backbone, params = tiny
  pixels = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    txt = torch_model.encode_text(tokenizer(LABELS)).float()
  classes = [0, 2]
  expected = _reference_maps(torch_model.visual, pixels,
                             lambda c: ref.SimilarityTarget(c, txt), classes, blocks)
  weights = np.stack([gradcam.zero_shot_target(txt.numpy(), c) for c in classes])
  got = gradcam.gradcam(backbone.module, params, pixels, weights, blocks)
  assert got.shape == (2, 224, 224) and got.dtype == np.float32
  assert got.min() >= 0 and got.max() <= 1
  np.testing.assert_allclose(got, expected, atol=1e-4)
  assert np.ptp(expected, axis=(1, 2)).min() > 0.9


def test_head_logit_maps_match_pytorch_grad_cam(tiny):
  """Linear probe / fine-tuned model: ClassifierOutputTarget on the full classifier."""
  torch_model, _, backbone, params = tiny
  torch.manual_seed(0)
  head = torch.nn.Linear(backbone.module.cfg.embed_dim, 14)
  torch.nn.init.xavier_uniform_(head.weight)
  clf = ref.Classifier(torch_model.visual, head)
  pixels = np.random.default_rng(1).normal(size=(2, 224, 224, 3)).astype(np.float32)
  classes = [1, 13]
  expected = _reference_maps(clf, pixels, ref.ClassifierOutputTarget, classes, [-2])
  kernel = head.weight.detach().numpy().T
  weights = np.stack([gradcam.head_target(kernel, c) for c in classes])
  got = gradcam.gradcam(backbone.module, params, pixels, weights, [-2])
  assert np.ptp(expected, axis=(1, 2)).max() > 0.9  # (an all-negative map is ReLU'd to zero)
  np.testing.assert_allclose(got, expected, atol=1e-4)


def test_bad_block_is_named(tiny):
  _, _, backbone, params = tiny
  with pytest.raises(ValueError, match="block -3 does not exist in a tower of 2 blocks"):
    gradcam.gradcam(backbone.module, params, np.zeros((1, 224, 224, 3), np.float32),
                    np.zeros(backbone.module.cfg.embed_dim), [-3])
