"""CoOp vs a PyTorch transcription of the reference CoOp forward for BiomedCLIP, same weights.

The torch side (reference_coop.py) follows the reference ``PromptLearner`` / ``TextEncoder``
(trainers/CoOp/coop_biomedclip.py): prompts tokenized by open_clip's tokenizer and padded to
256, word embeddings split into [CLS] prefix and suffix, context concatenated per class token
position, BERT run on ``inputs_embeds`` with the tokenized attention mask, [CLS] pooled, MLP
projection, CE of
``exp(logit_scale) * cos``. biomedjax runs the same prompts at a bucketed length (16 tokens).
Loss, logits and d loss / d ctx must agree to 1e-4 relative (fp32 both sides, "highest"
matmul precision; only summation order differs).
"""

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biomedjax.methods import coop
from biomedjax.methods.base import Task
from tests.parity import method_fixture
from tests.parity.reference_coop import TorchCoOp

BTMRI = ("glioma tumor", "meningioma tumor", "pituitary tumor", "normal brain")


def run_both(side, classnames, opts, batch_size=3, seed=0):
  """-> dict of (ours, reference) pairs: logits, loss and the gradient w.r.t. ctx."""
  torch_model, tokenizer, backbone, params = side
  method = coop.build(backbone, Task(classnames), opts)
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = method.init(jax.random.key(seed), frozen)
  rng = np.random.default_rng(seed)
  pixels = rng.normal(size=(batch_size, 224, 224, 3)).astype(np.float32)
  labels = rng.integers(0, len(classnames), batch_size).astype(np.int32)
  batch = {"features": backbone.encode_pixels(params, pixels), "label": labels}
  (loss, _), grads = method_fixture.loss_and_grads(method, trainable, frozen, batch)
  logits = method.logits(trainable, frozen, batch["features"])

  ref = TorchCoOp(torch_model, tokenizer, classnames, trainable["ctx"],
                  opts.get("class_token_position", "end"), opts.get("ctx_init", ""))
  ref_logits = ref(torch.from_numpy(pixels).permute(0, 3, 1, 2))
  ref_loss = F.cross_entropy(ref_logits, torch.from_numpy(labels).long())
  ref_loss.backward()
  return {"logits": (logits, ref_logits.detach().numpy()),
          "loss": (loss, ref_loss.detach().numpy()),
          "grad": (grads["ctx"], ref.ctx.grad.numpy())}


def _assert_close(pairs, tol=1e-4):
  for name, (ours, ref) in pairs.items():
    assert np.shape(ours) == np.shape(ref), name
    assert method_fixture.max_rel(ours, ref) < tol, (name, method_fixture.max_rel(ours, ref))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return method_fixture.build(tmp_path_factory.mktemp("tiny"), "tiny", seed=2)


@pytest.mark.parametrize("opts", [
    {"ctx_init": "a photo of a"},
    {"ctx_init": "", "class_token_position": "middle"},
    {"ctx_init": "", "class_token_position": "front"},
    {"ctx_init": "", "csc": True, "n_ctx": 3, "class_token_position": "middle"},
    {"ctx_init": "", "csc": True, "class_token_position": "front"},
])
def test_tiny_matches_reference(tiny, opts):
  classnames = ("glioma tumor", "kidney_cyst", "normal brain", "x ray of lungs")
  _assert_close(run_both(tiny, classnames, opts))


def test_tiny_ctx_init_equals_reference_init(tiny):
  torch_model, tokenizer, backbone, params = tiny
  method = coop.build(backbone, Task(BTMRI), {"ctx_init": "a photo of a"})
  ctx = method.init(jax.random.key(0), {"backbone": params})["ctx"]
  # Reference: embedding of tokenize(ctx_init), rows 1..n_ctx.
  with torch.no_grad():
    ref = torch_model.text.transformer.embeddings.word_embeddings(
        tokenizer(["a photo of a"]))[0, 1:5].numpy()
  np.testing.assert_array_equal(ctx, ref)


@pytest.mark.slow
def test_full_size_matches_reference(full_side):
  pairs = run_both(full_side, BTMRI, {"ctx_init": "a photo of a"}, batch_size=4)
  _assert_close(pairs)
  assert full_side[2].tokenize(["X X X X meningioma tumor."], "bucket")[0].shape[1] == 16
