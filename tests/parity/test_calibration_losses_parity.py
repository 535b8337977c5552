"""Every calibration loss and its gradient vs the PyTorch transcription of the reference registry.

Logit losses are compared on (B, C) logits with 2 and 3 classes, a batch with wrong and right
predictions, an all-correct batch (MMCE's zero branch) and one with large logits (MbLS margin
active); AS on normalised text features. Values and gradients to 1e-4 relative, fp32 both sides.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from biomedjax import calibration_losses as cl
from tests.parity import method_fixture
from tests.parity import reference_calib_losses as ref


def _batch(seed, b, c, scale, all_correct=False):
  rng = np.random.default_rng(seed)
  logits = (rng.normal(size=(b, c)) * scale).astype(np.float32)
  labels = rng.integers(0, c, b).astype(np.int32)
  if all_correct:
    labels = logits.argmax(1).astype(np.int32)
  return logits, labels


BATCHES = {"2cls": _batch(0, 16, 2, 2.0), "3cls": _batch(1, 16, 3, 3.0),
           "3cls_all_correct": _batch(2, 12, 3, 2.0, all_correct=True),
           "3cls_large": _batch(3, 16, 3, 12.0)}


def _ours(name):
  fn = {"ce": cl.TERMS["ce"].fn, "smac": lambda l, y: cl.smac(l, y, 0.1)}.get(
      name, cl.TERMS[name].fn)
  return jax.value_and_grad(fn)


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("name", sorted(ref.LOGIT_LOSSES))
def test_logit_loss_and_grad(name, batch):
  logits, labels = BATCHES[batch]
  value, grad = _ours(name)(jnp.asarray(logits), jnp.asarray(labels))
  t = torch.tensor(logits, requires_grad=True)
  r = ref.LOGIT_LOSSES[name](t, torch.tensor(labels).long())
  r.backward()
  assert float(value) == pytest.approx(r.item(), rel=1e-4, abs=1e-7), name
  if np.abs(t.grad.numpy()).max() == 0:
    assert np.abs(np.asarray(grad)).max() == 0
  else:
    assert method_fixture.max_rel(grad, t.grad.numpy()) < 1e-4


@pytest.mark.parametrize("batch", ["2cls", "3cls"])
@pytest.mark.parametrize("convention", ["reference", "torch"])
def test_label_smoothing(batch, convention):
  logits, labels = BATCHES[batch]
  value, grad = jax.value_and_grad(cl.label_smoothing)(jnp.asarray(logits), jnp.asarray(labels),
                                                       0.1, convention)
  t = torch.tensor(logits, requires_grad=True)
  y = torch.tensor(labels).long()
  r = ref.ls(t, y, 0.1) if convention == "reference" else torch.nn.functional.cross_entropy(
      t, y, label_smoothing=0.1)
  r.backward()
  assert float(value) == pytest.approx(r.item(), rel=1e-5)
  assert method_fixture.max_rel(grad, t.grad.numpy()) < 1e-4


def test_conventions_differ_and_smac_balanced_is_alpha_free():
  logits, labels = BATCHES["3cls"]
  a = cl.label_smoothing(logits, labels, 0.1, "reference")
  b = cl.label_smoothing(logits, labels, 0.1, "torch")
  assert abs(float(a) - float(b)) > 1e-3
  balanced = np.repeat(np.arange(3), 4).astype(np.int32)
  lg = logits[:12]
  assert float(cl.smac(lg, balanced, 0.0)) == pytest.approx(float(cl.smac(lg, balanced, 0.3)))
  assert float(cl.smac(lg, labels, 0.0)) != pytest.approx(float(cl.smac(lg, labels, 0.3)))


@pytest.mark.parametrize("c", [2, 3, 5])
def test_angular_separation(c):
  rng = np.random.default_rng(c)
  raw = rng.normal(size=(c, 8)).astype(np.float32)

  def ours(x):
    return cl.angular_separation(x / jnp.linalg.norm(x, axis=-1, keepdims=True))

  value, grad = jax.value_and_grad(ours)(jnp.asarray(raw))
  t = torch.tensor(raw, requires_grad=True)
  r = ref.angular_separation(torch.nn.functional.normalize(t, dim=-1))
  r.backward()
  assert float(value) == pytest.approx(r.item(), rel=1e-5, abs=1e-7)
  assert method_fixture.max_rel(grad, t.grad.numpy()) < 1e-4
  if c == 2:
    n = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
    assert float(value) == pytest.approx(float(n[0] @ n[1]), rel=1e-5)
