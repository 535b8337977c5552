"""KgCoOp vs a PyTorch transcription of the reference KgCoOp loss, same weights.

Reference: trainers/KgCoOp/kgcoop_biomedclip.py of the BiomedCoOp release.

The torch side: the reference prompt learner at 256 tokens (``reference_coop.TorchCoOp``), the
learned text features t from BERT on its ``inputs_embeds``, t^clip = normalised
``encode_text`` of "a photo of a {name}." (open_clip's own text path, as the reference's
``ori_embedding``), and loss = CE(scale * cos(image, t)) + W * (1 - mean CosineSimilarity(t,
t^clip)) with ``torch.nn.CosineSimilarity(dim=1, eps=1e-7)`` as the reference has it.
The context is "a photo of a"'s embeddings plus noise: at the exact initialisation t = t^clip and
the penalty and its gradient vanish, which would leave the W term untested.
Loss and d loss / d ctx agree to 1e-4 relative (fp32 both sides, "highest" matmul precision).
"""

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biomedjax.methods import kgcoop
from biomedjax.methods.base import Task
from tests.parity import method_fixture
from tests.parity.reference_coop import TorchCoOp

BTMRI = ("glioma tumor", "meningioma tumor", "pituitary tumor", "normal brain")


def torch_kgcoop_loss(ref: TorchCoOp, tokenizer, classnames, pixels, labels, w):
  """-> (loss, ce, penalty) of the reference KgCoOp forward; ``ref.ctx`` receives the gradient."""
  model = ref.model
  with torch.no_grad():
    img = model.encode_image(torch.from_numpy(pixels).permute(0, 3, 1, 2))
    old = model.encode_text(tokenizer([f"a photo of a {c.replace('_', ' ')}." for c in classnames]))
  mask = (ref.tokenized != model.text.config.pad_token_id).long()
  hidden = model.text.transformer(inputs_embeds=ref.prompts(), attention_mask=mask)
  txt = F.normalize(model.text.proj(hidden.last_hidden_state[:, 0]), dim=-1)
  logits = model.logit_scale.exp() * F.normalize(img, dim=-1) @ txt.T
  ce = F.cross_entropy(logits, torch.from_numpy(labels).long())
  cos = torch.nn.CosineSimilarity(dim=1, eps=1e-07)
  penalty = 1.0 - torch.mean(cos(txt, old / old.norm(dim=-1, keepdim=True)))
  return ce + w * penalty, ce, penalty


def run_both(side, classnames, opts, batch_size=3, seed=0):
  torch_model, tokenizer, backbone, params = side
  method = kgcoop.build(backbone, Task(classnames), opts)
  frozen = {"backbone": params, **method.prepare(params)}
  ctx = method.init(jax.random.key(seed), frozen)["ctx"]
  rng = np.random.default_rng(seed)
  noise = 40 * float(np.std(ctx)) * rng.normal(size=ctx.shape)  # far from the template
  trainable = {"ctx": (ctx + noise).astype(np.float32)}
  pixels = rng.normal(size=(batch_size, 224, 224, 3)).astype(np.float32)
  labels = rng.integers(0, len(classnames), batch_size).astype(np.int32)
  batch = {"features": backbone.encode_pixels(params, pixels), "label": labels}
  (loss, aux), grads = method_fixture.loss_and_grads(method, trainable, frozen, batch)

  ref = TorchCoOp(torch_model, tokenizer, classnames, trainable["ctx"],
                  opts.get("class_token_position", "end"), opts.get("ctx_init", "a photo of a"))
  ref_loss, ref_ce, ref_penalty = torch_kgcoop_loss(ref, tokenizer, classnames, pixels, labels,
                                                    opts.get("w", 2.0))
  ref_loss.backward()
  assert float(ref_penalty) > 1e-4  # the W term is active
  pairs = {"loss": (loss, ref_loss), "ce": (aux["data_loss"], ref_ce),
           "grad": (grads["ctx"], ref.ctx.grad)}
  for name, (ours, theirs) in pairs.items():
    theirs = theirs.detach().numpy()
    assert np.shape(ours) == np.shape(theirs), name
    assert method_fixture.max_rel(ours, theirs) < 1e-4, (name, method_fixture.max_rel(ours, theirs))
  # 1 - cos with cos within 1e-3 of 1 cancels: compare it at float32's resolution of cos instead.
  np.testing.assert_allclose(aux["kg"], ref_penalty.detach().numpy(), rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return method_fixture.build(tmp_path_factory.mktemp("tiny"), "tiny", seed=5)


@pytest.mark.parametrize("opts", [
    {},  # the reference config: "a photo of a", unified, end, W 2
    {"w": 8.0, "csc": True},
    {"w": 1000.0},  # the penalty's gradient dominates
    {"ctx_init": "", "class_token_position": "middle"},
])
def test_tiny_matches_reference(tiny, opts):
  run_both(tiny, ("glioma tumor", "kidney_cyst", "normal brain", "x ray of lungs"), opts,
           batch_size=3)


@pytest.mark.slow
def test_full_size_matches_reference(full_side):
  run_both(full_side, BTMRI, {}, batch_size=4)
