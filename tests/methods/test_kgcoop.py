"""KgCoOp on the tiny preset: loss against an independent rebuild, training, config, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax

from biomedjax.methods import kgcoop
from biomedjax.methods.base import Task
from configs import common
from configs import kgcoop as kgcoop_config
from tests import prompt_method_checks as pmc
from tests import tiny_backbone

CLASSES = tiny_backbone.CLASSNAMES


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return tiny_backbone.make(tmp_path_factory.mktemp("vocab"))


def test_prepare_holds_template_features(tiny):
  backbone, params = tiny
  method = kgcoop.build(backbone, Task(CLASSES), {"name": "kgcoop"})
  frozen = method.prepare(params)
  assert set(frozen) == {"token_embeddings", "clip_text_features"}
  np.testing.assert_allclose(frozen["clip_text_features"],
                             pmc.template_features(backbone, params, CLASSES), atol=1e-6)
  # ctx initialised from "a photo of a": the learned prompts ARE the template, drift is 0.
  full = {"backbone": params, **frozen}
  batch = tiny_backbone.with_features(method, pmc.synthetic_batch(4), full)
  _, aux = jax.jit(method.loss)(method.init(jax.random.key(0), full), full, batch,
                                jax.random.key(0))
  assert abs(float(aux["kg"])) < 1e-6


@pytest.mark.parametrize("w", [2.0, 0.5])
def test_loss_matches_independent_rebuild(tiny, w):
  backbone, params = tiny
  method = kgcoop.build(backbone, Task(CLASSES), {"ctx_init": "", "w": w})
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = method.init(jax.random.key(3), frozen)
  assert trainable["ctx"].shape == (4, 64)
  batch = pmc.synthetic_batch(4)
  loss, aux = method.loss(trainable, frozen, tiny_backbone.with_features(method, batch, frozen),
                          jax.random.key(0))

  txt = np.asarray(pmc.reference_text_features(backbone, params, CLASSES, trainable["ctx"]),
                   np.float64)
  clip = pmc.template_features(backbone, params, CLASSES)
  img = pmc.normalize(backbone.image_features(params, batch["image"]))
  logits = np.exp(float(params["logit_scale"])) * img @ txt.T
  ce = -log_softmax(logits, axis=1)[np.arange(4), batch["label"]].mean()
  cos = (txt * clip).sum(1) / np.linalg.norm(txt, axis=1) / np.linalg.norm(clip, axis=1)
  drift = 1.0 - cos.mean()
  assert drift > 1e-3  # random context: the penalty is active
  np.testing.assert_allclose(aux["data_loss"], ce, rtol=1e-5)
  np.testing.assert_allclose(aux["kg"], drift, rtol=1e-4)
  np.testing.assert_allclose(loss, ce + w * drift, rtol=1e-5)
  np.testing.assert_allclose(method.logits(trainable, frozen, jnp.asarray(img, jnp.float32)),
                             logits, rtol=1e-5, atol=1e-5)


def test_options_errors(tiny):
  backbone, _ = tiny
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['W'\]"):
    kgcoop.build(backbone, Task(CLASSES), {"W": 2.0})
  with pytest.raises(ValueError, match=r"w=-1\.0 must be a number >= 0"):
    kgcoop.build(backbone, Task(CLASSES), {"w": -1.0})


def test_config_reference_values_and_sweeps():
  c = kgcoop_config.get_config("dataset=busi,shots=4,seed=2")
  assert (c.method.name, c.method.w, c.method.n_ctx, c.method.ctx_init) == (
      "kgcoop", 10.0, 4, "a photo of a")  # W per dataset: tests/configs/test_config_tables.py
  assert (c.data.batch_size, c.optim.lr, c.optim.epochs, c.optim.name) == (128, 0.002, 100, "sgd")
  assert (c.data.dataset, c.data.shots, c.seed) == ("busi", 4, 2)
  b2n = kgcoop_config.get_config("setting=base2novel")
  assert b2n.data.setting == "base2novel" and (b2n.method.w, b2n.optim.epochs) == (8.0, 50)
  with pytest.raises(ValueError, match="setting='zero_shot'"):
    kgcoop_config.get_config("setting=zero_shot")
  few, base2novel = [], []
  kgcoop_config.sweep(lambda **kw: few.append(kw["arg"]))
  kgcoop_config.sweep(lambda **kw: base2novel.append(kw["arg"]),
                      "setting=base2novel,model=ckpt/b")
  n_datasets = len(common.DATASETS)
  assert len(few) == n_datasets * 5 * 3 and len(set(few)) == len(few)
  assert len(base2novel) == n_datasets * 3
  # launch.py merges the command's own args (model=...) into each point (tests/train/test_train.py)
  assert all("shots=16" in p and "setting=base2novel" in p for p in base2novel)
  for point in few[:3] + base2novel[:3]:
    kgcoop_config.get_config(point)  # every point parses back


def test_end_to_end_tiny_run(tmp_path):
  config = kgcoop_config.get_config("dataset=synthetic,shots=16,seed=1")
  config.method.csc = True
  results = pmc.tiny_run(config, tmp_path / "run", epochs=10, lr=0.02)
  assert results["method"] == "kgcoop"
  assert results["test"]["accuracy"] > 0.4  # 4 classes: chance is 0.25
