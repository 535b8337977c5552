"""CLIP-Adapter as a method: fit on cached views (the reference loop), selection, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biomedjax.methods import clip_adapter as ca
from tests import adapter_method_checks as checks


def test_fit_is_the_reference_loop_on_views(tiny):
  method, frozen = checks.build("clip_adapter", tiny, epochs=4)
  dim = frozen["text_features"].shape[1]
  assert method.stages == ("fit",) and method.fit_views == 4
  train, val, test = checks.features(dim, views=4)
  trained = method.fit(frozen, train, val, rng=jax.random.key(3))
  # The same computation by hand: init and per-epoch orders from the same key.
  k_init, k_order = jax.random.split(jax.random.key(3))
  params = ca.init_adapter(k_init, dim)
  orders = jax.vmap(lambda k: jax.random.permutation(k, 32))(jax.random.split(k_order, 4))
  want, losses = ca.train_on_views(params, jnp.asarray(train.features), orders,
                                   jnp.asarray(train.labels), frozen["text_features"],
                                   method.backbone.logit_scale(frozen["backbone"]), method.opts)
  for k in ("w1", "w2"):
    np.testing.assert_allclose(trained[k], want[k], rtol=1e-5, atol=1e-7)
  assert not np.allclose(trained["w1"], params["w1"])
  checks.accuracy(method, trained, frozen, test)


def test_best_val_selection_and_errors(tiny):
  method, frozen = checks.build("clip_adapter", tiny, epochs=3, select="best_val")
  train, val, _ = checks.features(frozen["text_features"].shape[1], views=3)
  method.fit(frozen, train, val)
  with pytest.raises(ValueError, match="val split is empty"):
    method.fit(frozen, train, None)
  with pytest.raises(ValueError, match="select='best'"):
    checks.build("clip_adapter", tiny, select="best")
  assert method.transfer({"w1": 1}, method) == {"w1": 1}  # class-agnostic
