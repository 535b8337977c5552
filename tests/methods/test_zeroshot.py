"""Zero-shot on the tiny preset: template and LLM-ensemble class features against numpy rules."""

import jax
import numpy as np
import pytest

from biomedjax.methods import zeroshot
from biomedjax.methods.base import Task
from tests import tiny_backbone

CLASSES = tiny_backbone.CLASSNAMES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return tiny_backbone.make(tmp_path_factory.mktemp("vocab"), seed=1)


_normalize = tiny_backbone.normalize


def _features_256(backbone, params, texts):
  """Unnormalised text features at the reference's 256 tokens (unjitted, a separate path)."""
  return np.asarray(backbone.text_features(params, *backbone.tokenize(list(texts), 256)))


def _llm_prompts(n_per_class):
  words = ("mri", "scan", "brain", "tumor", "normal", "with")
  return {c.replace("_", " "): tuple(f"an mri of {c.replace('_', ' ')} {words[i % 6]} {i}"
                                     for i in range(n))
          for c, n in zip(CLASSES, n_per_class)}


def test_template_logits(tiny):
  backbone, params = tiny
  method = zeroshot.build(backbone, Task(CLASSES), {"name": "zeroshot"})
  assert method.stages == ("fit",) and method.inputs == "features"
  frozen = {"backbone": params, **method.prepare(params)}
  assert method.fit(frozen, None, None) == {}
  prompts = [f"a photo of a {c.replace('_', ' ')}." for c in CLASSES]
  txt = _normalize(_features_256(backbone, params, prompts))
  img = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
  ref = np.exp(float(params["logit_scale"])) * _normalize(img) @ txt.T
  np.testing.assert_allclose(method.logits({}, frozen, img), ref, rtol=1e-5, atol=1e-5)


def test_ensemble_rule_per_prompt_index(tiny):
  backbone, params = tiny
  task = Task(CLASSES, llm_prompts=_llm_prompts([20] * 4))  # 80 prompts: two encoder batches
  method = zeroshot.build(backbone, task, {"ensemble": True})
  got = np.asarray(method.prepare(params)["text_features"])
  # The reference's ensemble loop: per index i, all classes, normalise; mean; renormalise.
  per_index = [_normalize(_features_256(backbone, params,
                                        [task.llm_prompts[c.replace("_", " ")][i]
                                         for c in CLASSES]))
               for i in range(20)]
  ref = _normalize(np.mean(per_index, axis=0))
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_ensemble_unequal_counts_and_n_prompts(tiny):
  backbone, params = tiny
  task = Task(CLASSES, llm_prompts=_llm_prompts([3, 5, 2, 4]))
  got = np.asarray(zeroshot.build(backbone, task, {"ensemble": True}).prepare(params)[
      "text_features"])
  lists = [task.llm_prompts[name.replace("_", " ")] for name in CLASSES]
  feats = _normalize(_features_256(backbone, params, [p for ps in lists for p in ps]))
  start = 0
  for c, ps in enumerate(lists):
    own = feats[start:start + len(ps)]
    start += len(ps)
    np.testing.assert_allclose(got[c], _normalize(own.mean(0)), rtol=1e-5, atol=1e-6)
  first2 = zeroshot.build(backbone, task, {"ensemble": True, "n_prompts": 2})
  assert [len(p) for p in first2.prompts] == [2, 2, 2, 2]
  with pytest.raises(ValueError, match=r"class 'glioma tumor' has 3 LLM prompts, fewer than "
                                       r"n_prompts=4"):
    zeroshot.build(backbone, task, {"ensemble": True, "n_prompts": 4})


def test_ensemble_errors(tiny):
  backbone, _ = tiny
  with pytest.raises(ValueError, match="needs the task's LLM prompts"):
    zeroshot.build(backbone, Task(CLASSES), {"ensemble": True})
  prompts = _llm_prompts([2] * 4)
  del prompts["normal brain"]
  with pytest.raises(ValueError, match="no LLM prompts for class 'normal brain'"):
    zeroshot.build(backbone, Task(CLASSES, llm_prompts=prompts), {"ensemble": True})
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['ensembel'\]"):
    zeroshot.build(backbone, Task(CLASSES), {"ensembel": True})


def test_loss_on_features(tiny):
  backbone, params = tiny
  method = zeroshot.build(backbone, Task(CLASSES))
  frozen = {"backbone": params, **method.prepare(params)}
  batch = {"image": np.zeros((2, 224, 224, 3), np.uint8), "label": np.array([0, 3])}
  loss, aux = method.loss({}, frozen, tiny_backbone.with_features(method, batch, frozen),
                          jax.random.key(0))
  logits = np.asarray(method.logits({}, frozen, backbone.image_features(params, batch["image"])),
                      np.float64)
  ref = -(logits - np.log(np.exp(logits).sum(1, keepdims=True)))[[0, 1], [0, 3]].mean()
  np.testing.assert_allclose(loss, ref, rtol=1e-5)
  assert 0 <= aux["accuracy"] <= 1
