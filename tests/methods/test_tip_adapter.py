"""Tip-Adapter's search rule on constructed counts, its bad inputs and its saved cache."""

import jax.numpy as jnp
import numpy as np
import pytest

from biomedjax.methods import harness
from biomedjax.methods import tip_adapter as tip
from biomedjax.methods.base import FeatureSet, Task
from tests import adapter_features
from tests import adapter_method_checks as checks


def test_first_best_is_beta_outer_alpha_inner_strict():
  betas, alphas = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0])
  counts = np.array([[1, 2, 2],
                     [0, 3, 1],
                     [3, 3, 3]])  # the max 3 first appears at beta 0.2, alpha 2.0
  r = tip.first_best(counts, betas, alphas)
  assert (r.beta, r.alpha, r.best_correct) == (0.2, 2.0, 3)
  # The reference loop, written out: same pick.
  best, pick = 0, (0.0, 0.0)
  for i, b in enumerate(betas):
    for j, a in enumerate(alphas):
      if counts[i, j] > best:
        best, pick = counts[i, j], (b, a)
  assert pick == (r.beta, r.alpha)
  assert (tip.first_best(np.zeros((3, 3), int), betas, alphas).beta,) == (0.0,)


def test_grid_counts_match_a_loop():
  d = adapter_features.make(seed=2, noise=2.0, text_noise=3.0)
  keys, values = tip.build_cache(d.views, d.train_labels, 4)
  val_n = jnp.asarray(adapter_features.normalize(d.val))
  betas, alphas = tip.grid(50, 7), tip.grid(50, 5)
  counts = tip.grid_counts(tip.SCALE * val_n @ d.text.T, val_n @ keys.T, values,
                           jnp.asarray(d.val_labels), jnp.asarray(betas), jnp.asarray(alphas))
  for i, b in enumerate(betas):
    for j, a in enumerate(alphas):
      logits = tip.tip_logits(val_n, d.text, keys, values, np.float32(b), np.float32(a))
      assert counts[i, j] == int((np.argmax(logits, 1) == d.val_labels).sum())


def test_empty_val_is_an_error():
  d = adapter_features.make(seed=2)
  with pytest.raises(ValueError, match="val set is empty"):
    tip.fit_tip_adapter(d.views, d.train_labels, d.val[:0], d.val_labels[:0], d.text, 4)


def test_saved_state_checks_classes_and_backbone(tmp_path):
  state = {"keys": np.ones((4, 3), np.float32)}
  params = {"a": np.arange(5.0), "b": {"c": np.ones((2, 2))}}
  fp = harness.backbone_fingerprint(params)
  harness.save_state(tmp_path / "cache", state, ("x", "y"), fp, "tip_adapter")
  out = harness.load_state(tmp_path / "cache", ("x", "y"), fp, "tip_adapter")
  np.testing.assert_array_equal(out["keys"], state["keys"])
  with pytest.raises(ValueError, match=r"built for classes \['x', 'y'\]"):
    harness.load_state(tmp_path / "cache", ("x", "z"), fp, "tip_adapter")
  other = harness.backbone_fingerprint({**params, "a": np.arange(5.0) + 1})
  with pytest.raises(ValueError, match="another backbone"):
    harness.load_state(tmp_path / "cache", ("x", "y"), other, "tip_adapter")
  with pytest.raises(ValueError, match="built by method 'tip_adapter'"):
    harness.load_state(tmp_path / "cache", ("x", "y"), fp, "lp_plus_plus")


def test_method_saves_and_reuses_its_cache(tiny, tmp_path):
  method, frozen = checks.build("tip_adapter", tiny, search_step=(10, 10),
                                cache=str(tmp_path / "cache" / "keys"))
  assert method.stages == ("fit",) and method.fit_views == 1
  train, val, test = checks.features(frozen["text_features"].shape[1])
  first = method.fit(frozen, train, val)
  assert (tmp_path / "cache" / "keys.npz").exists()
  other = FeatureSet(train.features + 1.0, train.labels)  # ignored: the saved cache is reused
  np.testing.assert_array_equal(method.fit(frozen, other, val)["keys"], first["keys"])
  checks.accuracy(method, first, frozen, test)
  renamed = type(method)(method.backbone, Task(checks.CLASSES[::-1]), method.opts)
  with pytest.raises(ValueError, match="built for classes"):
    renamed.fit({**frozen, **renamed.prepare(frozen["backbone"])}, train, val)
