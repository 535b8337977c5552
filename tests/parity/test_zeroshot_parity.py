"""Zero-shot logits vs open_clip on the same (random, converted) weights.

open_clip's side: prompts tokenized by its own HFTokenizer at 256 tokens, ``encode_text`` /
``encode_image``, normalised, times ``logit_scale.exp()``; the reference's ensemble rule
(per prompt index, all classes) is applied in torch per prompt index. biomedjax tokenizes at a
bucketed length. """

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biomedjax.methods import zeroshot
from biomedjax.methods.base import Task
from tests.parity import method_fixture

CLASSES = ("glioma tumor", "meningioma_tumor", "normal brain", "kidney stone")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return method_fixture.build(tmp_path_factory.mktemp("tiny"), "tiny", seed=5)


def _prompts(n):
  return {c.replace("_", " "): tuple(f"an mri scan showing {c.replace('_', ' ')} with cyst {i}"
                                     for i in range(n)) for c in CLASSES}


def _ours(side, task, opts, pixels):
  _, _, backbone, params = side
  method = zeroshot.build(backbone, task, opts)
  frozen = {"backbone": params, **method.prepare(params)}
  return np.asarray(method.logits({}, frozen, backbone.encode_pixels(params, pixels)))


def _reference(side, text_features, pixels):
  model = side[0]
  with torch.no_grad():
    img = F.normalize(model.encode_image(torch.from_numpy(pixels).permute(0, 3, 1, 2)), dim=-1)
    return (model.logit_scale.exp() * img @ text_features.T).numpy()


def test_template_logits_equal_open_clip(tiny):
  model, tokenizer = tiny[0], tiny[1]
  pixels = np.random.default_rng(0).normal(size=(3, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    txt = F.normalize(model.encode_text(tokenizer(
        [f"a photo of a {c.replace('_', ' ')}." for c in CLASSES])), dim=-1)
  ours = _ours(tiny, Task(CLASSES), {}, pixels)
  np.testing.assert_allclose(ours, _reference(tiny, txt, pixels), rtol=1e-4, atol=1e-4)


def test_ensemble_logits_equal_open_clip(tiny):
  model, tokenizer = tiny[0], tiny[1]
  task = Task(CLASSES, llm_prompts=_prompts(6))
  pixels = np.random.default_rng(1).normal(size=(2, 224, 224, 3)).astype(np.float32)
  with torch.no_grad():
    per_index = [F.normalize(model.encode_text(tokenizer(
        [task.llm_prompts[c.replace("_", " ")][i] for c in CLASSES])), dim=-1) for i in range(6)]
    txt = F.normalize(torch.stack(per_index).mean(0), dim=-1)
  ours = _ours(tiny, task, {"ensemble": True}, pixels)
  np.testing.assert_allclose(ours, _reference(tiny, txt, pixels), rtol=1e-4, atol=1e-4)
