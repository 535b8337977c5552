"""BiomedCoOp vs a PyTorch transcription of the reference training forward, same weights.

The torch side follows the reference trainer (trainers/BiomedCoOp/biomedcoop_biomedclip.py) as
it computes it: CoOp prompts ("a photo of a" context, class token at the end) padded to 256 tokens,
the LLM prompt features encoded at 256 tokens with open_clip, the image tower run TWICE (student and
zero-shot features), the per-index
prompt scores in a Python loop, ``torch.median`` / ``torch.std`` for the robust z-score, and the
loss CE + l1 * mse_loss + l2 * kl_div(reduction="sum", log_target=True) / numel. biomedjax runs
the prompts at a bucketed length and reuses one image forward. Loss and d loss / d ctx must agree
to 1e-4 relative, and the kept-prompt mask exactly, on prompts built so that some are outliers.
"""

import jax
import numpy as np
import pytest
import torch

from biomedjax.methods import biomedcoop
from biomedjax.methods.base import Task
from tests.parity import method_fixture
from tests.parity.reference_biomedcoop import TorchBiomedCoOp

BTMRI = ("glioma tumor", "meningioma tumor", "pituitary tumor", "normal brain")
# Per class: ordinary descriptions plus two odd ones that score far from the rest.
FORMS = ("a photo of a {}.", "an mri scan showing a {}.", "a brain mri with {}.",
         "the scan shows {}.", "mri of the brain: {}.", "an image of {} in the brain.",
         "x", "{0} " * 30)


def llm_prompts(classnames):
  return {c: tuple(f.format(c) for f in FORMS) for c in classnames}


def run_both(side, classnames, opts, batch_size=3, seed=0):
  torch_model, tokenizer, backbone, params = side
  prompts = llm_prompts(classnames)
  # The reference's text-tower dropout is random; parity is checked with it off (its own test
  # is in tests/methods/test_biomedcoop.py).
  method = biomedcoop.build(backbone, Task(classnames, llm_prompts=prompts),
                            dict(opts, text_dropout=False))
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = method.init(jax.random.key(seed), frozen)
  rng = np.random.default_rng(seed)
  # Move ctx off its init so that CE, SCCM and KDSP all have gradients of similar size.
  trainable = {"ctx": trainable["ctx"] + 0.02 * rng.normal(size=trainable["ctx"].shape)
               .astype(np.float32)}
  pixels = rng.normal(size=(batch_size, 224, 224, 3)).astype(np.float32)
  labels = rng.integers(0, len(classnames), batch_size).astype(np.int32)
  feats = backbone.encode_pixels(params, pixels)
  (loss, aux), grads = method_fixture.loss_and_grads(method, trainable, frozen,
                                                     {"features": feats, "label": labels})
  image = biomedcoop.l2_normalize(feats)
  _, keep = biomedcoop.teacher_logits(image, frozen["llm_features"],
                                      backbone.logit_scale(params), method.opts.tau)

  ref = TorchBiomedCoOp(torch_model, tokenizer, classnames, prompts, trainable["ctx"],
                        dict(tau=method.opts.tau, lambda_sccm=method.opts.lambda_sccm,
                             lambda_kdsp=method.opts.lambda_kdsp))
  ref_loss, ref_keep, ref_z = method_fixture.frozen_torch(torch_model, lambda: ref.step(
      torch.from_numpy(pixels).permute(0, 3, 1, 2), torch.from_numpy(labels).long()))
  # The case must be one where the teacher prunes, and not on the threshold's edge.
  assert 0 < ref_keep.sum() < len(FORMS), ref_z
  assert np.abs(np.abs(ref_z) - method.opts.tau).min() > 1e-3, ref_z
  np.testing.assert_array_equal(np.asarray(keep), ref_keep)
  assert int(aux["kept_prompts"]) == ref_keep.sum()
  assert method_fixture.max_rel(loss, ref_loss.detach().numpy()) < 1e-4
  assert method_fixture.max_rel(grads["ctx"], ref.ctx.grad.numpy()) < 1e-4, method_fixture.max_rel(grads["ctx"], ref.ctx.grad.numpy())
  return aux


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return method_fixture.build(tmp_path_factory.mktemp("tiny"), "tiny", seed=2)


@pytest.mark.parametrize("opts", [
    {"lambda_sccm": 0.5, "lambda_kdsp": 0.25, "tau": 1.5},
    {"lambda_sccm": 5.0, "lambda_kdsp": 20.0, "tau": 1.0},
])
def test_tiny_matches_reference(tiny, opts):
  run_both(tiny, BTMRI, dict(opts, n_prompts=len(FORMS)), batch_size=4)


@pytest.mark.slow
def test_full_size_matches_reference(full_side):
  run_both(full_side, BTMRI, {"n_prompts": len(FORMS), "lambda_sccm": 1.0, "lambda_kdsp": 2.0},
           batch_size=2)
