"""The rest of CalibPrompt's loss registry (ECCV_PENALTY, ECCV_ZS, MARGIN_MEAN_VAR,
TEXT_MOMENT_MATCHING), LogitNorm on an all-zero row, and every ``ENABLED_LOSSES`` baseline as
the reference composes it, against the PyTorch transcription of ``losses.py`` / ``coop.py``.

Batches include a class absent from the batch and one-sample batches. Loss and gradient to 1e-6
relative (absolute floor 1e-9), in float64 on both sides, so that the check measures the formula
rather than fp32 rounding (ZS-Norm's gradients are ~1e-5 and cancel to a few ulp in fp32).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from biomedjax import calibration_losses as cl
from biomedjax import objectives
from biomedjax.methods.base import Task
from tests.parity import reference_calib_losses as ref

TOL = dict(rtol=1e-6, atol=1e-9)
F64 = np.float64


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def _batch(seed, b, c, labels=None):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(b, c)) * 4
  zs = rng.normal(size=(b, c)) * 3 + 20   # a CLIP-like 100*cos range
  y = rng.integers(0, c, b) if labels is None else np.asarray(labels)
  text = rng.normal(size=(c, 6))
  text_zs = text + rng.normal(size=(c, 6)) * 0.5
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  return dict(logits=logits, labels=y.astype(np.int32), zs=zs, text=unit(text),
              text_zs=unit(text_zs))


BATCHES = {
    "3cls": _batch(0, 8, 3),
    "class_absent": _batch(1, 6, 4, labels=[0, 1, 2, 0, 1, 2]),   # class 3 never a label
    "one_sample": _batch(2, 1, 3, labels=[1]),
    "one_sample_2cls": _batch(3, 1, 2, labels=[0]),
}


def _close(ours, theirs):
  np.testing.assert_allclose(np.asarray(ours, np.float64), np.asarray(theirs, np.float64), **TOL)


def _torch(b, names=("logits",)):
  return {k: torch.tensor(b[k], requires_grad=True) for k in names}


def _check_logit_term(name, b):
  ours = cl.TERMS[cl.canonical(name)]
  if ours.needs == "zs_logits":
    fn = ((lambda l: ours.fn(l, b["labels"], b["zs"])) if ours.uses_labels
          else (lambda l: ours.fn(l, b["zs"])))
  else:
    fn = lambda l: ours.fn(l, b["labels"])
  value, grad = jax.jit(jax.value_and_grad(fn))(jnp.asarray(b["logits"]))
  t = _torch(b)["logits"]
  kwargs = {"zero_shot_logits": torch.tensor(b["zs"])} if name.startswith("ECCV") else {}
  r = ref.REGISTRY[name](t, torch.tensor(b["labels"]).long(), **kwargs)
  r.backward()
  _close(value, r.item())
  _close(grad, t.grad.numpy())


@pytest.mark.parametrize("name", ["ECCV_PENALTY", "ECCV_ZS", "MARGIN_MEAN_VAR"])
def test_logit_terms(name):
  for batch in sorted(BATCHES):
    _check_logit_term(name, BATCHES[batch])


def test_text_moment_matching():
  for b in BATCHES.values():
    value, grad = jax.jit(jax.value_and_grad(cl.text_moment_matching))(
        jnp.asarray(b["text"]), jnp.asarray(b["text_zs"]))
    t = _torch(b, ("text",))["text"]
    r = ref.text_moment_matching(torch.tensor(b["logits"]), torch.tensor(b["labels"]).long(),
                                 text_features=t,
                                 zero_shot_text_features=torch.tensor(b["text_zs"]))
    r.backward()
    _close(value, r.item())
    _close(grad, t.grad.numpy())
  assert float(cl.text_moment_matching(b["text"], b["text"])) == 0.0


def test_eccv_zs_clamps_and_zero_range():
  """A row whose logits all lie outside the zero-shot range, and one with a range under eps."""
  logits = np.array([[50.0, 60.0, 70.0], [1.0, 1.0 + 1e-7, 1.0 + 4e-8]], F64)  # range < eps, no ties
  zs = np.array([[20.0, 21.0, 22.0], [5.0, 5.0, 5.0]], F64)
  y = np.array([2, 1], np.int32)
  for name in ("ECCV_ZS", "ECCV_PENALTY"):
    _check_logit_term(name, dict(logits=logits, labels=y, zs=zs))


def test_logitnorm_all_zero_row_is_finite_and_matches():
  logits = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]], F64)
  y = np.array([1, 0], np.int32)
  value, grad = jax.value_and_grad(cl.logitnorm)(jnp.asarray(logits), jnp.asarray(y))
  t = torch.tensor(logits, requires_grad=True)
  r = ref.logitnorm(t, torch.tensor(y).long())
  r.backward()
  assert np.isfinite(np.asarray(grad)).all()
  _close(value, r.item())
  _close(grad, t.grad.numpy())     # 1e7-scale on the zero row, as the reference's


# Each baseline of the README ("set ENABLED_LOSSES to a single method") and the paper default,
# with the reference yaml weights (configs/trainers/CoOp/vit_b32_plip_c16_ep50_batch16.yaml:40-73).
BASELINES = [["CE"], ["LS"], ["FL"], ["DCA"], ["MDCA"], ["MMCE"], ["MBLS"], ["LOGITNORM"],
             ["SMAC"], ["ECCV_PENALTY"], ["ECCV_ZS"], ["MARGIN_MEAN_VAR"],
             ["TEXT_MOMENT_MATCHING"], ["LS", "SMAC", "AS"], ["CE", "MDCA"], ["FL", "MDCA"],
             ["CE", "DCA"], ["CE", "MMCE"]]
YAML_WEIGHTS = {"CE": 1.0, "DCA": 1.0, "MDCA": 1.0, "FL": 1.0, "LS": 1.0, "MMCE": 2.0, "AS": 0.01,
                "SMAC": 1.0, "ECCV_PENALTY": 1.0, "ECCV_ZS": 1.0, "MBLS": 1.0, "LOGITNORM": 1.0,
                "MARGIN_MEAN_VAR": 1.0, "TEXT_MOMENT_MATCHING": 5.0}


def test_enabled_losses_compose_as_the_reference():
  """One check per ENABLED_LOSSES list (a loop: one compilation per list, one test)."""
  for enabled in BASELINES:
    _check_composition(enabled, BATCHES["class_absent"])


def _check_composition(enabled, b):
  alpha = 0.05
  cfg = cl.reference_loss(enabled, alpha, {"AS": YAML_WEIGHTS["AS"]})
  obj = objectives.make(cfg, Task(tuple(f"c{i}" for i in range(b["logits"].shape[1]))))
  assert obj.data == "none", enabled

  def f(logits, text):
    return obj(logits, jnp.asarray(b["labels"]), text_features=text,
               zero_shot_logits=jnp.asarray(b["zs"]),
               zero_shot_text_features=jnp.asarray(b["text_zs"]))[0]

  value, (g_logits, g_text) = jax.value_and_grad(f, argnums=(0, 1))(jnp.asarray(b["logits"]),
                                                                     jnp.asarray(b["text"]))
  t = _torch(b, ("logits", "text"))
  r = ref.compute_losses(enabled, YAML_WEIGHTS, t["logits"], torch.tensor(b["labels"]).long(),
                         alpha, text_features=t["text"],
                         zero_shot_logits=torch.tensor(b["zs"]),
                         zero_shot_text_features=torch.tensor(b["text_zs"]))
  r.backward()
  _close(value, r.item())
  for ours, theirs in ((g_logits, t["logits"].grad), (g_text, t["text"].grad)):
    _close(ours, np.zeros(ours.shape) if theirs is None else theirs.numpy())
  # single-loss baselines replace cross-entropy: ['FL'] is not CE + FL
  if enabled == ["FL"]:
    ce = float(cl.TERMS["ce"].fn(b["logits"], b["labels"]))
    assert abs(float(value) - float(cl.focal(b["logits"], b["labels"]))) < 1e-6
    assert abs(float(value) - ce) > 1e-3
