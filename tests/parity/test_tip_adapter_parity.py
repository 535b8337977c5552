"""Tip-Adapter and Tip-Adapter-F vs PyTorch transcriptions of the reference, on fixed features.

The torch side (reference_adapters.py) runs the reference's literal double loop, its
AdamW/cosine fine-tunes and its selection rules; ours runs the vectorised search and the vmapped
alpha0 fine-tunes. The data make many (beta, alpha) pairs tie at the best val accuracy, so the
first-found rule (beta outer, alpha inner, strict >) decides the pick. The literal torch loop
costs ~0.3 ms a pair on a busy 2-core box, so it runs a 60 x 60 grid over the same range (same
formula, same order); the 200 x 200 grid's values are checked on their own.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

STEP = (60, 60)  # grid size of the literal-loop comparisons
from biomedjax.methods import tip_adapter as tip
from biomedjax.methods import tip_adapter_f as tip_f
from tests import adapter_features
from tests.parity import method_fixture
from tests.parity import reference_adapters as ref


@pytest.fixture(scope="module")
def data():
  # Poor text features (zero-shot is weak) and noisy images: the cache decides, val has 16 images.
  return adapter_features.make(seed=3, noise=2.0, text_noise=3.0, views=201, view_noise=0.6)


@pytest.fixture(scope="module")
def tip_both(data):
  keys_t, values_t = ref.build_cache_model(data.views[:1], data.train_labels)
  val_t = ref.t(adapter_features.normalize(data.val))
  record = {}
  beta_t, alpha_t = ref.search_hp_tip(keys_t, values_t, val_t, ref.t(data.val_labels, torch.long),
                                      ref.t(data.text).t(), search_step=STEP, record=record)
  ours = tip.fit_tip_adapter(data.views[:1], data.train_labels, data.val, data.val_labels,
                             data.text, 4, tip.Options(search_step=STEP))
  return dict(keys_t=keys_t, values_t=values_t, beta_t=beta_t, alpha_t=alpha_t, record=record,
              ours=ours)


def test_grid_endpoints():
  g = tip.grid(50, 200)
  assert g.shape == (200,) and g[0] == 0.1 and g[-1] == pytest.approx(49.7505, abs=1e-12)
  assert np.diff(g) == pytest.approx(0.2495, abs=1e-12)


def test_cache_and_logits(data, tip_both):
  ours = tip_both["ours"]
  assert method_fixture.max_rel(ours["keys"], tip_both["keys_t"].t().numpy()) < 1e-6
  np.testing.assert_array_equal(ours["values"], tip_both["values_t"].float().numpy())
  test_n = adapter_features.normalize(data.test)
  for beta, alpha in [(1.0, 1.0), (0.1, 49.7505), (5.39, 3.0)]:
    got = tip.tip_logits(jnp.asarray(test_n), jnp.asarray(data.text), jnp.asarray(ours["keys"]),
                         jnp.asarray(ours["values"]), beta, alpha)
    want = ref.tip_logits(ref.t(test_n), tip_both["keys_t"], tip_both["values_t"],
                          ref.t(data.text).t(), beta, alpha)
    assert method_fixture.max_rel(got, want.numpy()) < 1e-5


def test_search_matches_reference_loop_with_ties(data, tip_both):
  ours, record = tip_both["ours"], tip_both["record"]
  betas, alphas = tip.grid(50, STEP[0]), tip.grid(50, STEP[1])
  val_n = adapter_features.normalize(data.val)
  counts = np.asarray(tip.grid_counts(
      tip.SCALE * jnp.asarray(val_n) @ jnp.asarray(data.text).T,
      jnp.asarray(val_n) @ jnp.asarray(ours["keys"]).T, jnp.asarray(ours["values"]),
      jnp.asarray(data.val_labels), jnp.asarray(betas), jnp.asarray(alphas)))
  ref_counts = np.array([[record[(b, a)] for a in alphas] for b in betas]) * len(val_n) / 100
  np.testing.assert_array_equal(counts, np.round(ref_counts))
  # The ties are real: the best accuracy is reached by many pairs, not at the first pair, and
  # at the chosen beta some smaller alpha is worse (so the alpha order matters too).
  best = counts.max()
  assert (counts == best).sum() > 10 and counts[0, 0] < best
  assert (ours["beta"], ours["alpha"]) == pytest.approx((tip_both["beta_t"], tip_both["alpha_t"]),
                                                        abs=1e-6)
  assert ours["val_correct"] == best


def test_all_zero_search_gives_zero_pair(data):
  """Every val image labelled with a class that no pair predicts: 0 % everywhere -> (0, 0)."""
  val_n = adapter_features.normalize(data.val)
  text = data.text.copy()
  text[3] = -adapter_features.normalize(val_n.mean(0, keepdims=True))[0]  # never the argmax
  labels = np.full(len(val_n), 3, np.int32)
  train_labels = np.where(data.train_labels == 3, 0, data.train_labels)  # no class-3 cache rows
  keys_t, values_t = ref.build_cache_model(data.views[:1], train_labels)
  values_t = torch.nn.functional.pad(values_t.float(), (0, 1)).half()
  want = ref.search_hp_tip(keys_t, values_t, ref.t(val_n), ref.t(labels, torch.long),
                           ref.t(text).t(), search_step=(20, 20))
  ours = tip.fit_tip_adapter(data.views[:1], train_labels, data.val, labels, text, 4,
                             tip.Options(search_step=(20, 20)))
  assert want == (0, 0) and (ours["beta"], ours["alpha"]) == (0.0, 0.0)


def _tip_f_both(data, share_keys, train_labels=None, val_labels=None, text=None):
  """The reference's finetune branch (torch transcription) and ours on the same features."""
  train_labels = data.train_labels if train_labels is None else train_labels
  val_labels = data.val_labels if val_labels is None else val_labels
  text = data.text if text is None else text
  keys_t, values_t = ref.build_cache_model(data.views[:1], train_labels)
  values_t = torch.nn.functional.pad(values_t.float(), (0, 4 - values_t.shape[1])).half()
  keys0 = keys_t.t().clone().numpy()
  views_n = adapter_features.normalize(data.views)
  want = ref.tip_adapter_f(
      keys_t, values_t, lambda a, e: ref.t(views_n[1 + (a * 20 + e) % 200]),
      ref.t(train_labels, torch.long), ref.t(adapter_features.normalize(data.val)),
      ref.t(val_labels, torch.long), ref.t(text).t(), search_step=STEP, share_keys=share_keys)
  ours = tip_f.fit_tip_adapter_f(data.views, train_labels, data.val, val_labels, text, 4,
                                 tip_f.Options(search_step=STEP, shared_keys=share_keys))
  return want, ours, keys0, values_t


@pytest.fixture(scope="module")
def tip_f_both(data):
  return {share: _tip_f_both(data, share) for share in (True, False)}


@pytest.mark.parametrize("share_keys", [True, False], ids=["reference", "independent"])
def test_tip_adapter_f_full_procedure(data, tip_f_both, share_keys):
  want, ours, keys0, values_t = tip_f_both[share_keys]
  n_val = len(data.val_labels)
  np.testing.assert_array_equal(ours.alpha0_correct, np.round(np.array(want["alpha0_acc"]) *
                                                              n_val / 100))
  assert ours.alpha0 == want["alpha0"] > 0
  W_t = want["adapter"].weight.detach().numpy()
  assert method_fixture.max_rel(ours.W, W_t) < 1e-4
  assert not np.allclose(W_t, keys0, atol=1e-4)  # the fine-tune moved the keys
  # The reference's sharing: the final keys are the matrix all ten fine-tunes left, though an
  # earlier alpha0 won (its main loop saved that matrix at its first epoch and reloaded it).
  assert want["saved"]
  if share_keys:
    assert want["alpha0"] < 9 and np.array_equal(W_t, want["last_alpha0"].numpy())
  assert (ours.beta, ours.alpha) == pytest.approx((want["beta"], want["alpha"]), abs=1e-6)
  test_n = adapter_features.normalize(data.test)
  got = tip_f.adapter_logits(jnp.asarray(ours.W), jnp.asarray(test_n), jnp.asarray(data.text),
                             jnp.asarray(ours.values), ours.beta, ours.alpha, tip.SCALE)
  ref_logits = ref.tip_logits(ref.t(test_n), None, values_t, ref.t(data.text).t(), want["beta"],
                              want["alpha"], adapter=want["adapter"])
  assert method_fixture.max_rel(got, ref_logits.numpy()) < 1e-4
  np.testing.assert_array_equal(np.argmax(np.asarray(got), 1), ref_logits.argmax(1).numpy())


def test_tip_adapter_f_sharing_changes_the_result(tip_f_both):
  """The two transcriptions differ on these data (the sequence is not a no-op), and so do
  ours: the default follows the reference's in-place sequence."""
  (shared, ours_shared, _, _), (fresh, ours_fresh, _, _) = tip_f_both[True], tip_f_both[False]
  W_shared, W_fresh = (w["adapter"].weight.detach().numpy() for w in (shared, fresh))
  assert method_fixture.max_rel(W_fresh, W_shared) > 1e-2
  assert method_fixture.max_rel(ours_fresh.W, ours_shared.W) > 1e-2


@pytest.mark.parametrize("share_keys", [True, False], ids=["reference", "independent"])
def test_tip_adapter_f_no_alpha0_beats_zero(data, share_keys):
  """Every val image has a class nothing predicts: no alpha0 (nor main-training epoch) beats
  0 %. The reference keeps its first adapter, whose parameter views the keys (the matrix the ten
  left when shared), trains it in the main loop and saves no epoch; ours keeps that matrix."""
  text = data.text.copy()
  text[3] = -adapter_features.normalize(adapter_features.normalize(data.val).mean(
      0, keepdims=True))[0]
  train_labels = np.where(data.train_labels == 3, 0, data.train_labels)
  want, ours, keys0, _ = _tip_f_both(data, share_keys, train_labels,
                                     np.full(len(data.val), 3, np.int32), text)
  assert want["alpha0"] == -1 and ours.alpha0 == -1 and not want["saved"]
  assert not np.any(ours.alpha0_correct)
  start = want["main_start"].numpy()
  assert np.array_equal(start, keys0) != share_keys
  assert method_fixture.max_rel(ours.W, start) < 1e-4


def test_one_adamw_step_matches_torch(data):
  """One AdamW step with eps 1e-4 and the implicit wd 0.01, on a random gradient."""
  rng = np.random.default_rng(0)
  p, g = rng.normal(size=(8, 5)).astype(np.float32), rng.normal(size=(8, 5)).astype(np.float32)
  tp = torch.nn.Parameter(torch.from_numpy(p.copy()))
  opt = torch.optim.AdamW([tp], lr=1e-3, eps=1e-4)
  for _ in range(2):
    tp.grad = torch.from_numpy(g)
    opt.step()
  q, m, v = jnp.asarray(p), jnp.zeros_like(p), jnp.zeros_like(p)
  for step in (1, 2):
    q, m, v = tip_f.adamw_step(q, jnp.asarray(g), m, v, step, 1e-3, tip_f.Options())
  assert method_fixture.max_rel(q, tp.detach().numpy()) < 1e-6
