"""CLIP-Adapter vs a PyTorch transcription of the reference, on fixed features and weights.

Logits, loss and gradients of one batch; the LR sequence of the reference's scheduler stepped per
iteration (Dassl's constant warm-up around torch's CosineAnnealingLR); and 20 epochs of training
on fixed per-epoch views and loader orders with a short last batch (drop_last=False).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biomedjax.methods import clip_adapter as ca
from tests import adapter_features
from tests.parity import method_fixture
from tests.parity import reference_adapters as ref

SCALE = 85.23234  # a model's exp(logit_scale); CLIP-Adapter reads it from the model


def torch_adapter(params):
  a = ref.Adapter(params["w1"].shape[0])
  a.fc[0].weight.data = torch.from_numpy(np.asarray(params["w1"]).T.copy())
  a.fc[2].weight.data = torch.from_numpy(np.asarray(params["w2"]).T.copy())
  return a


def test_init_bounds():
  p = ca.init_adapter(jax.random.key(0), 512)
  assert p["w1"].shape == (512, 128) and p["w2"].shape == (128, 512)
  assert sum(x.size for x in p.values()) == 131072
  for k, bound in (("w1", 0.04419), ("w2", 0.08839)):
    assert bound * 0.98 < float(jnp.abs(p[k]).max()) <= bound + 1e-5


def test_logits_loss_grads():
  data = adapter_features.make(seed=1, noise=4.0, text_noise=4.0)  # a loss far from 0
  params = ca.init_adapter(jax.random.key(2), 512)
  x, y = data.train[:32], data.train_labels[:32]
  x_n = adapter_features.normalize(x)

  def loss(p):
    logits = ca.adapted_logits(p, jnp.asarray(x_n), jnp.asarray(data.text), SCALE, 0.5)
    return ca.optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

  (value, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
  adapter = torch_adapter(params)
  want_logits = ref.clip_adapter_logits(adapter, ref.t(x_n), ref.t(data.text), SCALE)
  want = F.cross_entropy(want_logits, ref.t(y, torch.long))
  want.backward()
  assert method_fixture.max_rel(logits, want_logits.detach().numpy()) < 1e-5
  assert float(value) == pytest.approx(want.item(), rel=1e-5) and want.item() > 0.1
  assert method_fixture.max_rel(grads["w1"], adapter.fc[0].weight.grad.numpy().T) < 1e-4
  assert method_fixture.max_rel(grads["w2"], adapter.fc[2].weight.grad.numpy().T) < 1e-4


def test_lr_sequence():
  optimizer, scheduler = ref.clip_adapter_sgd()
  want = []
  for _ in range(100):
    want.append(optimizer.param_groups[0]["lr"])
    optimizer.step()
    scheduler.step()
  got = np.asarray(ca.learning_rate(jnp.arange(100)))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
  assert want[0] == 1e-5 and want[1] == 0.01
  assert want[2] == pytest.approx(0.00993844, rel=1e-6)
  assert want[20] == pytest.approx(6.15583e-05, rel=1e-5)
  assert abs(want[21]) < 1e-12 and want[41] == pytest.approx(0.01, rel=1e-6)  # restarts


def test_training_on_views_matches_torch():
  """n = 48 (3 classes x 16): two iterations per epoch, the second of 16 (drop_last=False)."""
  data = adapter_features.make(seed=4, num_classes=3, views=20, noise=4.0, text_noise=4.0)
  rng = np.random.default_rng(0)
  orders = np.stack([rng.permutation(48) for _ in range(20)])
  params = ca.init_adapter(jax.random.key(3), 512)
  text = data.text
  got, losses = jax.jit(lambda p, v, o, y, t: ca.train_on_views(p, v, o, y, t, SCALE,
                                                                ca.Options()))(
      params, data.views, orders, data.train_labels, text)

  adapter = torch_adapter(params)
  optimizer, scheduler = ref.clip_adapter_sgd(params=adapter.parameters())
  views_n = adapter_features.normalize(data.views)
  want_losses = []
  for e in range(20):
    for i in range(0, 48, 32):
      idx = orders[e][i:i + 32]
      logits = ref.clip_adapter_logits(adapter, ref.t(views_n[e][idx]), ref.t(text), SCALE)
      loss = F.cross_entropy(logits, ref.t(data.train_labels[idx], torch.long))
      optimizer.zero_grad()
      loss.backward()
      optimizer.step()
      scheduler.step()
      want_losses.append(loss.item())
  assert min(want_losses) > 0.05  # far from 0, where CE's relative error explodes
  np.testing.assert_allclose(losses, want_losses, rtol=1e-4)
  assert method_fixture.max_rel(got["w1"], adapter.fc[0].weight.detach().numpy().T) < 1e-4
  assert method_fixture.max_rel(got["w2"], adapter.fc[2].weight.detach().numpy().T) < 1e-4
  assert want_losses[-1] < want_losses[0]
