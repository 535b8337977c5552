"""The engine across method families: multilabel tasks, pixel-space methods, a trainable tower.

* A multilabel task (synthetic multi-hot data) runs end to end with zero-shot and a linear head
  trained with BCE; every reported multilabel metric equals scikit-learn's on the saved logits.
* A toy pixel-space method (an additive frame on the [0, 1] image, trained through the frozen tiny
  tower) runs through ``train_and_evaluate``: gradients reach only the frame.
* A toy full fine-tune (``trainable_backbone=("visual",)``) changes the image tower and leaves
  the text tower bit-identical, in fp32 and with bf16 compute (fp32 master weights).
* Objectives: label smoothing in both conventions against torch, BCE against torch, and clear
  errors for a wrong objective/kind pairing and for a softmax-only method on a multilabel task.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from biomedjax import objectives
from biomedjax.methods import METHODS
from biomedjax.methods.base import Method, Task
from biomedjax.models.clip import l2_normalize
from biomedjax.train import loop, step as step_lib
from biomedjax.train.loop import train_and_evaluate
from tests import tiny_backbone


def _tiny_config(name, dataset="synthetic", shots=8, epochs=3):
  import importlib
  config = importlib.import_module(f"configs.{name}").get_config(
      f"dataset={dataset},shots={shots}")
  config.model.preset, config.model.init = "tiny", ""
  config.data.test_batch_size = 64
  config.optim.epochs = epochs
  config.train.progress = False
  config.train.log_every_steps = 1
  return config


@pytest.fixture(scope="module")
def multilabel_runs(tmp_path_factory):
  """zero-shot and a BCE linear head on the same synthetic multi-hot data (one run each)."""
  out = {}
  for name, epochs in (("zeroshot", 1), ("linear_head", 15)):
    config = _tiny_config(name, "synthetic_multilabel", shots=0, epochs=epochs)
    config.optim.lr = 0.5
    workdir = tmp_path_factory.mktemp(name)
    train_and_evaluate(config, workdir)
    out[name] = workdir
  return out


@pytest.mark.parametrize("name", ["zeroshot", "linear_head"])
def test_multilabel_metrics_equal_sklearn(multilabel_runs, name):
  from sklearn import metrics as skm
  workdir = multilabel_runs[name]
  results = json.loads((workdir / "results.json").read_text())
  assert results["task_kind"] == "multilabel"
  saved = np.load(workdir / "predictions" / "test.npz")
  scores, y = saved["logits"].astype(np.float64), saved["labels"].astype(int)
  r = results["test"]
  pred = (scores > 0).astype(int)
  assert r["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
  assert r["exact_match"] == pytest.approx(skm.accuracy_score(y, pred))
  assert r["lrap"] == pytest.approx(skm.label_ranking_average_precision_score(y, scores))
  assert r["coverage_error"] == pytest.approx(skm.coverage_error(y, scores))
  assert r["ranking_loss"] == pytest.approx(skm.label_ranking_loss(y, scores))
  for j, c in enumerate(results["test"]["classnames"]):
    assert r["per_label"][c]["auroc"] == pytest.approx(skm.roc_auc_score(y[:, j], scores[:, j]))
    p, rec, f1, _ = skm.precision_recall_fscore_support(y[:, j], pred[:, j], average="binary",
                                                        zero_division=0)
    assert (r["per_label"][c]["precision"], r["per_label"][c]["recall"],
            r["per_label"][c]["f1"]) == pytest.approx((p, rec, f1))


def test_bce_head_learns_the_multilabel_task(multilabel_runs):
  results = json.loads((multilabel_runs["linear_head"] / "results.json").read_text())
  losses = [loss for _, loss in results["train_loss"]]
  assert losses[-1] < losses[0]
  assert results["test"]["macro_auroc"] > 0.75  # chance: 0.5


def test_softmax_only_method_refuses_a_multilabel_task(tmp_path):
  backbone, _ = tiny_backbone.make(tmp_path)
  task = Task(tiny_backbone.CLASSNAMES, kind="multilabel")
  with pytest.raises(ValueError, match="'prograd' is defined for multiclass tasks, not "
                                       "'multilabel': its KL term"):
    METHODS["prograd"].build(backbone, task, {})
  with pytest.raises(ValueError, match="config.loss.data='softmax_ce' is for multiclass"):
    objectives.make({"data": "softmax_ce"}, task)
  with pytest.raises(ValueError, match=r"config.loss: unknown key\(s\) \['smoothing_alpha'\]"):
    objectives.make({"smoothing_alpha": 0.1}, task)


@pytest.mark.parametrize("convention", ["reference", "torch"])
def test_label_smoothing_conventions_against_torch(convention):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 4)).astype(np.float32)
  labels = np.array([0, 1, 2, 3, 0, 2])
  obj = objectives.make({"label_smoothing": 0.1, "smoothing": convention}, Task(("a", "b", "c",
                                                                                 "d")))
  ours = float(obj(jnp.asarray(logits), jnp.asarray(labels))[0])
  t = torch.from_numpy(logits)
  if convention == "torch":
    ref = torch.nn.functional.cross_entropy(t, torch.from_numpy(labels), label_smoothing=0.1)
  else:  # the calibration reference's LabelSmoothingLoss: alpha / (C - 1) on wrong classes
    target = torch.full((6, 4), 0.1 / 3).scatter_(1, torch.from_numpy(labels)[:, None], 0.9)
    ref = (-target * torch.log_softmax(t, 1)).sum(1).mean()
  assert ours == pytest.approx(float(ref), rel=1e-6)
  bce = objectives.make(None, Task(("a", "b", "c", "d"), kind="multilabel"))
  targets = (rng.random((6, 4)) < 0.5).astype(np.float32)
  ref = torch.nn.functional.binary_cross_entropy_with_logits(t, torch.from_numpy(targets))
  assert float(bce(jnp.asarray(logits), jnp.asarray(targets))[0]) == pytest.approx(float(ref),
                                                                                  rel=1e-6)


# -- A toy pixel-space method and a toy fine-tune, registered only inside these tests. ----------

class Frame(Method):
  """Adds a learned frame (16-px border) to the [0, 1] image; zero-shot text head."""
  name = "toy_frame"
  inputs = "pixels"

  def prepare(self, backbone_params):
    ids, mask = self.backbone.tokenize(self.task.prompts())
    return {"text": l2_normalize(self.backbone.text_features(backbone_params, ids, mask))}

  def init(self, rng, frozen):
    size = self.backbone.cfg.vision.image_size
    return {"frame": jnp.zeros((size, size, 3), jnp.float32)}

  def logits(self, trainable, frozen, images):
    size = images.shape[1]
    inner = np.zeros((size, size, 1), np.float32)
    inner[16:-16, 16:-16] = 1.0
    programmed = images + (1.0 - inner) * trainable["frame"]
    feats = self.backbone.image_features(frozen["backbone"], programmed)
    return self.backbone.logit_scale(frozen["backbone"]) * l2_normalize(feats) @ frozen["text"].T


class FineTune(Method):
  """The image tower moves into the trainable pytree; a linear head on its features."""
  name = "toy_finetune"
  inputs = "pixels"
  trainable_backbone = ("visual",)

  def init(self, rng, frozen):
    from biomedjax.methods.linear_head import torch_linear_init
    return {"visual": frozen["backbone"]["visual"],
            "head": torch_linear_init(rng, self.backbone.cfg.embed_dim, self.task.num_classes)}

  def logits(self, trainable, frozen, images):
    assert "visual" not in frozen["backbone"]  # the engine removed the trained part
    params = {**frozen["backbone"], "visual": trainable["visual"]}
    feats = self.backbone.image_features(params, images)
    return feats @ trainable["head"]["kernel"] + trainable["head"]["bias"]


@dataclasses.dataclass(frozen=True)
class NoOptions:
  pass


def _register(monkeypatch, cls):
  monkeypatch.setattr(cls, "options_type", NoOptions, raising=False)
  monkeypatch.setitem(METHODS, cls.name, cls)


def test_pixel_space_method_trains_only_its_frame(tmp_path, monkeypatch):
  _register(monkeypatch, Frame)
  config = _tiny_config("coop", epochs=2)
  with config.unlocked():
    config.method = ml_collections.ConfigDict({"name": "toy_frame"})
  config.optim.lr = 0.5
  results = train_and_evaluate(config, tmp_path)
  assert results["test"]["num_examples"] == 48 and np.isfinite(results["test"]["nll"])
  assert results["trainable_parameters"] == {"stored": 224 * 224 * 3, "effective": 224 * 224 * 3}
  # One engine step by hand: the gradient reaches the frame, on its border only.
  backbone, params = tiny_backbone.make(tmp_path / "vocab")
  method = METHODS["toy_frame"].build(backbone, Task(tiny_backbone.CLASSNAMES), {})
  frozen = {"backbone": params, **method.prepare(params)}
  batch = tiny_backbone.with_features(method, tiny_backbone.image_batch(4, 4), frozen)
  assert batch["image"].dtype == jnp.float32 and float(batch["image"].max()) <= 1.0
  _, grads = jax.jit(method.value_and_grad)(method.init(None, frozen), frozen, batch,
                                            jax.random.key(0))
  g = np.abs(np.asarray(grads["frame"])).sum(-1)
  assert g[:16].sum() > 0 and g[16:-16, 16:-16].sum() == 0
  assert list(grads) == ["frame"]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_finetune_changes_the_image_tower_only(tmp_path, dtype):
  from biomedjax.methods.base import Backbone
  backbone, params = tiny_backbone.make(tmp_path)
  backbone = Backbone(backbone.module, backbone.tokenizer, dtype)
  method = FineTune(backbone, Task(tiny_backbone.CLASSNAMES), NoOptions())
  frozen = {"backbone": params}
  trainable = method.init(jax.random.key(0), frozen)
  before = jax.tree.map(np.array, params)
  frozen_step = loop.split_frozen(method, frozen)
  assert set(frozen_step["backbone"]) == {"text", "logit_scale"}
  import optax
  tx = optax.sgd(0.05)
  step = step_lib.make_train_step(method, backbone, tx, jax.sharding.Mesh(jax.devices()[:1],
                                                                          ("data",)))
  batch = jax.tree.map(jnp.asarray, tiny_backbone.image_batch(4, 4))
  new, _, _, metrics = step(jax.tree.map(jnp.copy, trainable), tx.init(trainable), {},
                            frozen_step, batch, jax.random.key(0), 0)
  assert np.isfinite(float(metrics["loss"]))
  assert jax.tree.leaves(new)[0].dtype == jnp.float32  # fp32 master weights
  moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)), new["visual"],
                       before["visual"])
  assert all(jax.tree.leaves(moved)), "every image-tower leaf gets a gradient"
  jax.tree.map(np.testing.assert_array_equal, params["text"], before["text"])
