"""config.loss.terms: composition with the data term, reference weights, one clear error each."""

import jax.numpy as jnp
import numpy as np
import pytest

from biomedjax import calibration_losses as cl
from biomedjax import objectives
from biomedjax.methods.base import Task

TASK = Task(("a", "b", "c"))


def _batch():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(8, 3)) * 3, jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, 8), jnp.int32)
  text = rng.normal(size=(3, 5))
  return logits, labels, jnp.asarray(text / np.linalg.norm(text, axis=1, keepdims=True))


def test_terms_add_to_the_data_term():
  logits, labels, text = _batch()
  obj = objectives.make(dict(label_smoothing=0.1, terms="smac:1.0, as:3.0"), TASK)
  assert obj.terms == (("smac", 1.0), ("as", 3.0))
  loss, m = obj(logits, labels, text_features=text)
  expected = (cl.label_smoothing(logits, labels, 0.1) + cl.smac(logits, labels, 0.1)
              + 3.0 * cl.angular_separation(text))
  assert float(loss) == pytest.approx(float(expected), rel=1e-6)
  assert float(m["as_loss"]) == pytest.approx(float(cl.angular_separation(text)), rel=1e-6)
  # bare names take the reference weights; no terms leaves the data term alone
  assert objectives.make(dict(terms="mmce,as,dca"), TASK).terms == (
      ("mmce", 2.0), ("as", 3.0), ("dca", 1.0))
  plain, _ = objectives.make(None, TASK)(logits, labels)
  focal, _ = objectives.make(dict(terms="focal:0.5"), TASK)(logits, labels)
  assert float(focal) == pytest.approx(float(plain + 0.5 * cl.focal(logits, labels)), rel=1e-6)


@pytest.mark.parametrize("terms,message", [
    ("smac:1.0,sMAcc:2", "unknown loss term 'smacc'"),
    ("as:three", "weight 'three' of loss term 'as' is not a number"),
    ("as:inf", "not finite"),
    ("as,as:2", "given twice"),
])
def test_bad_terms(terms, message):
  with pytest.raises(ValueError, match=message):
    objectives.make(dict(terms=terms), TASK)


def test_calibration_terms_on_multilabel_are_an_error():
  with pytest.raises(ValueError, match="single-label .* 'multilabel'"):
    objectives.make(dict(terms="smac"), Task(("x", "y"), kind="multilabel"))


def test_as_without_text_features_is_an_error():
  logits, labels, _ = _batch()
  with pytest.raises(ValueError, match="needs the class text features"):
    objectives.make(dict(terms="as"), TASK)(logits, labels)
