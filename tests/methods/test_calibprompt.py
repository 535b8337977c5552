"""CalibPrompt on the tiny preset: reference values, init, training touches only ctx, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biomedjax import calibration_losses as cl
from biomedjax.methods import calibprompt
from biomedjax.methods.base import Task
from tests import tiny_backbone

CLASSES = ("glioma tumor", "normal brain", "pituitary tumor")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return tiny_backbone.make(tmp_path_factory.mktemp("vocab"))


def test_reference_values():
  from configs import calibprompt as cfg_module
  o = calibprompt.Options()
  assert (o.n_ctx, o.class_token_position, o.embed_mode) == (16, "end", "full_embeddings")
  c = cfg_module.get_config()
  assert (c.data.dataset, c.data.shots, c.seed, c.data.batch_size) == ("covid", 8, 1, 16)
  assert (c.optim.name, c.optim.lr, c.optim.epochs, c.optim.momentum) == ("sgd", 0.002, 50, 0.9)
  assert (c.optim.weight_decay, c.optim.warmup_epochs, c.optim.warmup_lr) == (5e-4, 1, 1e-5)
  assert c.data.epoch_drop_last and c.data.random_flip and c.data.layout == "calibprompt"
  assert (c.loss.label_smoothing, c.loss.smoothing, c.loss.terms) == (
      0.1, "reference", "smac:1.0,as:3.0")
  assert cfg_module.alpha_and_w_as("medclip", "covid") == (0.2, 1.0)
  assert cfg_module.alpha_and_w_as("quiltnet", "digestpath") == (0.05, 0.001)
  assert c.data.template == "A chest X-ray image of {} patient"
  assert calibprompt.REFERENCE_LOSS == dict(c.loss)
  assert cfg_module.get_config("dataset=busi").data.layout == ""


def test_init_train_and_objective(tiny):
  backbone, params = tiny
  m = calibprompt.build(backbone, Task(CLASSES), {})
  frozen = {"backbone": params, **m.prepare(params)}
  trainable = m.init(jax.random.key(1), frozen)
  ctx = np.asarray(trainable["ctx"])
  assert ctx.shape == (16, backbone.cfg.text.width) and abs(ctx.std() - 0.02) < 0.003
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(6, backbone.cfg.embed_dim)).astype(np.float32)
  batch = {"features": jnp.asarray(feats), "label": jnp.asarray([0, 1, 2, 0, 1, 2], jnp.int32)}
  loss, aux = m.loss(trainable, frozen, batch, jax.random.key(0))
  text = m.text_features(trainable, frozen)
  logits = m.logits(trainable, frozen, batch["features"])
  expected = (cl.label_smoothing(logits, batch["label"], 0.1) + cl.smac(logits, batch["label"], 0.1)
              + 3.0 * cl.angular_separation(text))
  assert float(loss) == pytest.approx(float(expected), rel=1e-5)
  assert set(aux) >= {"data_loss", "smac_loss", "as_loss", "accuracy"}


def test_bad_options(tiny):
  backbone, _ = tiny
  with pytest.raises(ValueError, match="'end' only"):
    calibprompt.build(backbone, Task(CLASSES), {"class_token_position": "front"})
  with pytest.raises(ValueError, match="embed_mode"):
    calibprompt.build(backbone, Task(CLASSES), {"embed_mode": "both"})
  with pytest.raises(ValueError, match="unknown key"):
    calibprompt.build(backbone, Task(CLASSES), {"ctx_init": "a photo of a"})
