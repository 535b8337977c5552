"""Tip-Adapter-F as a method: the procedure in ``fit`` on views, and its bad inputs."""

import numpy as np
import pytest

from biomedjax.methods import tip_adapter_f as tip_f
from biomedjax.methods.base import FeatureSet
from tests import adapter_method_checks as checks


def test_fit_runs_the_procedure_on_views(tiny):
  method, frozen = checks.build("tip_adapter_f", tiny, epochs=3, init_alpha_scale=4,
                                search_step=(20, 20))
  assert method.stages == ("fit",) and method.fit_views == 1 + 4 * 3
  train, val, test = checks.features(frozen["text_features"].shape[1], views=13)
  state = method.fit(frozen, train, val)
  want = tip_f.fit_tip_adapter_f(train.features, train.labels, val.features, val.labels,
                                 frozen["text_features"], 4, method.opts)
  np.testing.assert_allclose(state["W"], want.W, rtol=1e-6, atol=1e-7)
  assert (float(state["beta"]), float(state["alpha"])) == pytest.approx((want.beta, want.alpha))
  checks.accuracy(method, state, frozen, test)
  assert checks.build("tip_adapter_f", tiny)[0].fit_views == 201  # reference: 1 + 10 x 20
  assert checks.build("tip_adapter_f", tiny, max_views=8)[0].fit_views == 8


def test_bad_inputs(tiny):
  method, frozen = checks.build("tip_adapter_f", tiny, epochs=2, init_alpha_scale=2,
                                search_step=(4, 4), batch_size=16)
  train, val, _ = checks.features(frozen["text_features"].shape[1])
  with pytest.raises(ValueError, match="val split is empty"):
    method.fit(frozen, train, FeatureSet(val.features[:0], val.labels[:0]))
  with pytest.raises(ValueError, match="32 training images exceed batch_size=16"):
    method.fit(frozen, train, val)
  with pytest.raises(ValueError, match=r"train labels must be integers in \[0, 4\)"):
    method.fit(frozen, FeatureSet(train.features, train.labels + 1), val)
