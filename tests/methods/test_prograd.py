"""ProGrad on the tiny preset: the projection rule, the update against independent gradients,
the "self" teacher, training through the engine, config and errors.

The independent side takes d L_ce / d ctx and d L_kl / d ctx with ``jax.grad`` of losses written
here on the reference's 256-token prompts (``prompt_method_checks.reference_text_features``), and
projects them with a numpy transcription of the reference's per-tensor rule.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from biomedjax.methods import prograd
from biomedjax.methods.base import Task
from configs import common
from configs import prograd as prograd_config
from tests import prompt_method_checks as pmc
from tests import tiny_backbone

CLASSES = tiny_backbone.CLASSNAMES
T = 2.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return tiny_backbone.make(tmp_path_factory.mktemp("vocab"))


def reference_update(a, b, lam=1.0):
  """The reference's rule for one tensor, in numpy float64 (NaN cosine: no projection)."""
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  with np.errstate(invalid="ignore", divide="ignore"):
    b_unit = b / np.linalg.norm(b)
    cos = np.dot(a / np.linalg.norm(a), b_unit)
  return a - lam * np.dot(a, b_unit) * b_unit if cos < 0 else a


@pytest.mark.parametrize("case", ["conflict", "aligned", "zero_kl", "zero_ce"])
@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_project_matches_reference_rule(case, lam):
  rng = np.random.default_rng(0)
  a = rng.normal(size=(3, 5)).astype(np.float32)
  b = {"conflict": -a + 0.3 * rng.normal(size=a.shape), "aligned": a + rng.normal(size=a.shape),
       "zero_kl": np.zeros_like(a), "zero_ce": rng.normal(size=a.shape)}[case].astype(np.float32)
  if case == "zero_ce":
    a = np.zeros_like(a)
  got, conflict = prograd.project(jnp.asarray(a), jnp.asarray(b), lam)
  ref = reference_update(a, b, lam)
  assert bool(conflict) == (case == "conflict")
  np.testing.assert_allclose(np.asarray(got).ravel(), ref, rtol=1e-5, atol=1e-6)
  if case == "conflict" and lam == 1.0:  # the update is then orthogonal to g_kl
    scale = np.linalg.norm(b) * np.linalg.norm(a)
    assert abs(np.dot(np.asarray(got).ravel(), b.ravel())) < 1e-5 * scale


class Independent:
  """Losses and gradients written here on the reference's 256-token prompts, jitted once.

  ``teacher`` is the teacher's logits as an input array (so detached); for the reference's
  "self" teacher it is the student's own logits.
  """

  def __init__(self, backbone, params, images):
    img = jnp.asarray(pmc.normalize(jax.jit(backbone.image_features)(params, images)),
                      jnp.float32)
    scale = jnp.exp(params["logit_scale"])

    def logits(ctx):
      return scale * img @ pmc.reference_text_features(backbone, params, CLASSES, ctx).T

    def ce(ctx, labels):
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits(ctx)), labels[:, None], 1))

    def kl(ctx, teacher):
      q = jax.nn.softmax(teacher / T)
      return -T * T * jnp.mean(jnp.sum(q * jax.nn.log_softmax(logits(ctx) / T), -1))

    self.zeroshot = np.asarray(scale * img @ pmc.template_features(backbone, params, CLASSES).T)
    self.logits = jax.jit(logits)
    self.ce = jax.jit(jax.value_and_grad(ce))
    self.kl = jax.jit(jax.value_and_grad(kl))

  def labels(self, ctx, conflict):
    """Labels that make CE and KL pull apart (conflict) or the same way.

    KL raises the logits where the teacher's softmax(z/T) exceeds the student's softmax(s/T) and
    lowers them where it falls short; CE raises the label's logit. So label = argmin of
    (teacher - student) probabilities opposes the two, argmax aligns them.
    """
    diff = softmax(self.zeroshot / T, 1) - softmax(np.asarray(self.logits(ctx)) / T, 1)
    return (diff.argmin(1) if conflict else diff.argmax(1)).astype(np.int32)


@pytest.fixture(scope="module")
def case(tiny):
  """(backbone, params, batch, Independent) shared by the update tests."""
  backbone, params = tiny
  batch = pmc.synthetic_batch(6, seed=1)
  return backbone, params, batch, Independent(backbone, params, batch["image"])


@pytest.mark.parametrize("conflict", [True, False])
def test_zeroshot_teacher_update_matches_independent(case, conflict):
  backbone, params, batch, ind = case
  method = prograd.build(backbone, Task(CLASSES), {"ctx_init": "", "teacher": "zeroshot"})
  frozen = {"backbone": params, **method.prepare(params)}
  np.testing.assert_allclose(frozen["clip_text_features"],
                             pmc.template_features(backbone, params, CLASSES), atol=1e-6)
  trainable = method.init(jax.random.key(5), frozen)
  ctx = trainable["ctx"]
  batch = {**batch, "label": ind.labels(ctx, conflict)}
  ce, g_ce = ind.ce(ctx, batch["label"])
  kl, g_kl = ind.kl(ctx, ind.zeroshot)
  cos = float(np.vdot(g_ce, g_kl) / np.linalg.norm(g_ce) / np.linalg.norm(g_kl))
  assert (cos < 0) == conflict, cos  # the constructed case is the one intended

  batch = tiny_backbone.with_features(method, batch, frozen)
  (loss, aux), grads = jax.jit(method.value_and_grad)(trainable, frozen, batch,
                                                      jax.random.key(0))
  np.testing.assert_allclose(loss, ce, rtol=1e-5)
  np.testing.assert_allclose(aux["kl"], kl, rtol=1e-5)
  assert float(aux["conflict"]) == float(conflict)
  ref = reference_update(g_ce, g_kl).reshape(g_ce.shape)
  np.testing.assert_allclose(grads["ctx"], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
  if conflict:  # and the projection did change the update
    assert np.abs(np.asarray(grads["ctx"]) - np.asarray(g_ce)).max() > 1e-3 * np.abs(g_ce).max()


def test_self_teacher_update_is_the_ce_gradient(case):
  backbone, params, batch, ind = case
  method = prograd.build(backbone, Task(CLASSES), {"ctx_init": ""})
  frozen = {"backbone": params, **method.prepare(params)}
  assert "clip_text_features" not in frozen  # the self teacher needs no template features
  trainable = method.init(jax.random.key(6), frozen)
  ctx = trainable["ctx"]
  logits = np.asarray(ind.logits(ctx))
  ce, g_ce = ind.ce(ctx, batch["label"])
  _, g_kl = ind.kl(ctx, logits)
  # The reference's "teacher" is the student: its KL gradient is zero up to rounding.
  assert np.abs(g_kl).max() < 1e-5 * np.abs(g_ce).max()
  batch = tiny_backbone.with_features(method, batch, frozen)
  (loss, aux), grads = jax.jit(method.value_and_grad)(trainable, frozen, batch,
                                                      jax.random.key(0))
  entropy = -(softmax(logits / T, 1) * log_softmax(logits / T, 1)).sum(1).mean()
  np.testing.assert_allclose(loss, ce, rtol=1e-5)
  np.testing.assert_allclose(aux["kl"], T * T * entropy, rtol=1e-5)
  np.testing.assert_allclose(grads["ctx"], g_ce, rtol=1e-4, atol=1e-4 * np.abs(g_ce).max())
  loss2, aux2 = jax.jit(method.loss)(trainable, frozen, batch, jax.random.key(0))
  np.testing.assert_allclose(loss2, ce, rtol=1e-5)
  np.testing.assert_allclose(aux2["kl"], aux["kl"], rtol=1e-5)


def test_options_errors(tiny):
  backbone, _ = tiny
  task = Task(CLASSES)
  with pytest.raises(ValueError, match=r"teacher='zero_shot'; use one of \('self', 'zeroshot'\)"):
    prograd.build(backbone, task, {"teacher": "zero_shot"})
  with pytest.raises(ValueError, match=r"temperature=0\.0 must be > 0"):
    prograd.build(backbone, task, {"temperature": 0.0})
  with pytest.raises(ValueError, match=r"lam=-0\.5 must be >= 0"):
    prograd.build(backbone, task, {"lam": -0.5})
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['T'\]"):
    prograd.build(backbone, task, {"T": 2.0})


def test_config_reference_values_and_sweeps():
  c = prograd_config.get_config("dataset=kvasir,shots=8,seed=3")
  m = c.method
  assert (m.name, m.teacher, m.temperature, m.lam, m.n_ctx, m.ctx_init) == (
      "prograd", "self", 1.0, 1.0, 4, "a photo of a")  # T per dataset: test_config_tables.py
  assert (c.data.batch_size, c.optim.lr, c.optim.epochs) == (128, 0.002, 100)
  b2n = prograd_config.get_config("setting=base2novel")
  assert b2n.data.setting == "base2novel"
  assert (b2n.method.temperature, b2n.optim.lr, b2n.optim.epochs) == (1.0, 0.0015, 50)
  few, base2novel = [], []
  prograd_config.sweep(lambda **kw: few.append(kw["arg"]))
  prograd_config.sweep(lambda **kw: base2novel.append(kw["arg"]), "setting=base2novel")
  n_datasets = len(common.DATASETS)
  assert len(few) == n_datasets * 15 and len(base2novel) == n_datasets * 3
  for point in few[:3] + base2novel[:3]:
    assert prograd_config.get_config(point).method.name == "prograd"


def test_end_to_end_tiny_run(tmp_path):
  config = prograd_config.get_config("dataset=synthetic,shots=16,seed=1")
  config.method.csc = True
  config.method.teacher = "zeroshot"  # the projecting path; "self" trains as CoOp does
  results = pmc.tiny_run(config, tmp_path / "run", epochs=10, lr=0.02)
  assert results["method"] == "prograd"
  assert results["test"]["accuracy"] > 0.4  # 4 classes: chance is 0.25
