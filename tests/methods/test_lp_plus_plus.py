"""LP++ as a method: fit on one augmented view, its options and bad inputs."""

import jax
import numpy as np
import pytest

from biomedjax.methods import lp_plus_plus as lp
from tests import adapter_method_checks as checks


def test_fit_and_logits(tiny):
  method, frozen = checks.build("lp_plus_plus", tiny, epochs=30)
  assert method.stages == ("fit",) and method.fit_views == 1
  train, val, test = checks.features(frozen["text_features"].shape[1])
  state = method.fit(frozen, train, val, rng=jax.random.key(2))
  want = lp.fit_lp_plus_plus(jax.random.key(2), train.features, train.labels, val.features,
                             val.labels, frozen["text_features"], 4, method.opts)
  for k in ("W", "b", "alpha"):
    np.testing.assert_allclose(state[k], want["params"][k], rtol=1e-6)
  assert state["alpha"].shape == (4,) and state["W"].shape == (4, train.features.shape[1])
  assert checks.accuracy(method, state, frozen, test) > 0.25


def test_bad_inputs(tiny):
  method, frozen = checks.build("lp_plus_plus", tiny, epochs=2)
  train, val, _ = checks.features(frozen["text_features"].shape[1])
  with pytest.raises(ValueError, match="val split is empty"):
    method.fit(frozen, train, None)
  bad, _ = checks.build("lp_plus_plus", tiny, epochs=2, alpha_grad="sum")
  with pytest.raises(ValueError, match="alpha_grad='sum'"):
    bad.fit(frozen, train, val)
