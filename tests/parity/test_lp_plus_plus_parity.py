"""LP++ vs a PyTorch transcription of the reference loop (linear_probe_p2), on fixed features.

Same features, same bias init: step sizes, alpha0, the fp16-rounded W init, the alpha trajectory
of all 300 epochs (accumulated alpha gradients) and the selected (>=) state agree to 1e-4.
"""

import jax
import numpy as np
import pytest
import torch

from biomedjax.methods import lp_plus_plus as lp
from tests import adapter_features
from tests.parity import method_fixture
from tests.parity import reference_adapters as ref


@pytest.fixture(scope="module")
def both():
  data = adapter_features.make(seed=5, noise=2.5, text_noise=1.0)
  ours = lp.fit_lp_plus_plus(jax.random.key(1), data.train, data.train_labels, data.val,
                             data.val_labels, data.text, 4)
  F_n = adapter_features.normalize(data.train)
  want = ref.lp_plus_plus(ref.t(F_n), ref.t(data.train_labels, torch.long),
                          ref.t(adapter_features.normalize(data.val)),
                          ref.t(data.val_labels, torch.long), ref.t(data.text).t(), shots=16,
                          bias=np.asarray(_bias(jax.random.key(1), 4, 512)))
  return data, ours, want


def _bias(rng, num_classes, dim):
  bound = 1.0 / np.sqrt(dim)
  return jax.random.uniform(rng, (num_classes,), minval=-bound, maxval=bound)


def test_step_sizes_and_init(both):
  data, ours, want = both
  assert ours["lr_w"] == pytest.approx(want["lr_w"], rel=1e-5)
  assert ours["lr_alpha"] == pytest.approx(want["lr_alpha"], rel=1e-5)
  assert ours["alpha0"] == pytest.approx(want["alpha0"], rel=1e-6)
  assert ours["lr_w"] >= 4.0  # ||f|| = 1 bounds lambda_max by n
  W0 = lp.init_weights(adapter_features.normalize(data.train), data.train_labels, 4)
  np.testing.assert_array_equal(np.asarray(W0), want["W0"])  # the fp16 bmm, bit for bit
  exact = lp.init_weights(adapter_features.normalize(data.train), data.train_labels, 4, False)
  assert not np.array_equal(np.asarray(exact), want["W0"])  # the rounding is visible


def test_trajectory_and_selection(both):
  _, ours, want = both
  alphas = np.stack(want["alphas"])
  assert method_fixture.max_rel(ours["alphas"], alphas) < 1e-4
  # Accumulation is what the reference does: alpha moves further each update than a fresh grad.
  steps = np.abs(np.diff(alphas[9::10], axis=0)).mean(1)
  assert steps[-1] > 2 * steps[0]
  assert ours["epoch"] == want["best_epoch"]
  for k in ("W", "b", "alpha"):
    assert method_fixture.max_rel(ours["params"][k], want["best"][k]) < 1e-4, k


def test_alpha_grad_options(both):
  """The clean variants: "fresh" (this epoch's gradient), "window" (the last 10 epochs' sum).

  Their first alpha update equals the reference's: its sum also covers epochs 0..9 only."""
  data, ours, _ = both
  fits = {g: lp.fit_lp_plus_plus(jax.random.key(1), data.train, data.train_labels, data.val,
                                 data.val_labels, data.text, 4, lp.Options(epochs=30, alpha_grad=g))
          for g in ("fresh", "window")}
  a0 = ours["alpha0"]  # alpha is ~100 and moves by ~1e-3: compare the moves
  moved = {g: f["alphas"] - a0 for g, f in fits.items()}
  ref_moved = ours["alphas"][:30] - a0
  np.testing.assert_allclose(moved["window"][:19], ref_moved[:19], rtol=1e-2, atol=1e-6)
  assert np.abs(moved["window"][19:] - ref_moved[19:]).max() > 0.1 * np.abs(ref_moved).max()
  assert np.abs(moved["fresh"][9:] - ref_moved[9:]).max() > 0.1 * np.abs(ref_moved).max()
