"""BiomedCoOp on the tiny preset: prompt selection, loss, prompt-file errors, training, end to end.

References are independent: the outlier rule in plain Python (``statistics.median_low`` is
torch.median's lower middle value), the loss in float64 numpy from text features encoded at the
reference's 256 tokens one class at a time, and the real prompt file when it is present.
"""

import json
import statistics

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from biomedjax.methods import biomedcoop
from biomedjax.methods.base import Task
from biomedjax.train import setup
from tests import tiny_backbone

CLASSES = tiny_backbone.CLASSNAMES
N_PROMPTS = 6


def synthetic_prompts(classnames, n=N_PROMPTS, extra=0):
  """A prompt-ensemble dict in the published file's format, from the tiny vocabulary."""
  forms = ["a photo of a {}", "an mri scan showing {}", "the {} with tumor", "{}",
           "a scan of the {}", "normal brain or {}", "an x photo with {} the", "the the {}"]
  return {"llm_prompts": {c.replace("_", " "): [forms[i % len(forms)].format(c.replace("_", " "))
                                                + " ." * (i // len(forms))
                                                for i in range(n + extra)]
                          for c in classnames}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  return tiny_backbone.make(tmp_path_factory.mktemp("vocab"))


def _task(classnames=CLASSES, prompts=None):
  prompts = prompts or synthetic_prompts(classnames)
  return Task(tuple(classnames), llm_prompts={k: tuple(v)
                                              for k, v in prompts["llm_prompts"].items()})


def reference_keep(scores, tau):
  """The reference's rule in plain Python: median/MAD z-score, standardised, |.| <= tau."""
  med = statistics.median_low(scores)
  mad = statistics.median_low([abs(s - med) for s in scores])
  z = [(s - med) / mad for s in scores]
  mean, std = statistics.fmean(z), statistics.stdev(z)
  return [abs((v - mean) / std) <= tau for v in z]


@pytest.mark.parametrize("n", [7, 10, 50])
def test_lower_median_is_torch_median(n):
  x = np.random.default_rng(n).normal(size=n).astype(np.float32)
  assert float(biomedcoop.lower_median(jnp.asarray(x))) == float(torch.median(torch.from_numpy(x)))
  assert float(biomedcoop.lower_median(jnp.asarray(x))) == statistics.median_low(x.tolist())


@pytest.mark.parametrize("seed", range(6))
def test_select_prompts_matches_plain_python(seed):
  rng = np.random.default_rng(seed)
  scores = rng.normal(10, 1, size=50)
  scores[rng.choice(50, 4, replace=False)] += rng.choice([-6, 6], 4)  # outliers both ways
  keep = np.asarray(biomedcoop.select_prompts(jnp.asarray(scores, jnp.float32), 1.5))
  ref = reference_keep(scores.astype(np.float32).astype(float).tolist(), 1.5)
  np.testing.assert_array_equal(keep, ref)
  assert 0 < keep.sum() < 50 - 3


def test_select_prompts_degenerate_cases_keep_everything():
  # Reference: MAD = 0 -> division by zero -> NaN loss. Here: all prompts kept.
  assert np.asarray(biomedcoop.select_prompts(jnp.asarray([3.0, 3.0, 3.0, 5.0]), 1.5)).all()
  assert np.asarray(biomedcoop.select_prompts(jnp.asarray([1.0, 2.0]), 1.5)).all()
  assert np.asarray(biomedcoop.select_prompts(jnp.asarray([1.0]), 1.5)).all()


def _batch(n=4, seed=0):
  return tiny_backbone.image_batch(n, len(CLASSES), seed)


_normalize = tiny_backbone.normalize


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_loss_matches_numpy_reference(tiny):
  backbone, params = tiny
  opts = {"n_prompts": N_PROMPTS, "lambda_sccm": 0.7, "lambda_kdsp": 3.0, "tau": 1.0,
          "text_dropout": False}
  method = biomedcoop.build(backbone, _task(), opts)
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = method.init(jax.random.key(0), frozen)
  trainable = {"ctx": trainable["ctx"] + 0.05 * jax.random.normal(jax.random.key(1), (4, 64))}
  batch = _batch()
  loss, aux = method.loss(trainable, frozen, tiny_backbone.with_features(method, batch, frozen),
                          jax.random.key(0))

  f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
  prompts = synthetic_prompts(CLASSES)["llm_prompts"]
  llm = np.stack([_normalize(f64(backbone.text_features(params, *backbone.tokenize(
      prompts[c.replace("_", " ")], length=None)))) for c in CLASSES])  # (C, P, D) at 256 tokens
  np.testing.assert_allclose(frozen["llm_features"], llm, rtol=1e-4, atol=1e-5)
  s = float(np.exp(f64(params["logit_scale"])))
  img = _normalize(f64(backbone.image_features(params, batch["image"])))
  txt = _normalize(f64(method.learner.text_features(params, trainable["ctx"],
                                                    frozen["token_embeddings"])))
  logits = s * img @ txt.T
  scores = [float((s * img @ llm[:, p].T).max(1).mean()) for p in range(N_PROMPTS)]
  keep = np.array(reference_keep(scores, 1.0))
  assert 0 < keep.sum() < N_PROMPTS, scores  # the case must prune something
  teacher = s * img @ _normalize(llm[:, keep].mean(1)).T
  lq, lp = _log_softmax(teacher), _log_softmax(logits)
  ce = -lp[np.arange(4), batch["label"]].mean()
  mse = ((txt - _normalize(llm.mean(1))) ** 2).mean()
  kl = (np.exp(lq) * (lq - lp)).sum() / logits.size
  np.testing.assert_allclose(loss, ce + 0.7 * mse + 3.0 * kl, rtol=2e-5)
  np.testing.assert_allclose([aux["data_loss"], aux["sccm"], aux["kdsp"]], [ce, mse, kl], rtol=5e-5)
  assert int(aux["kept_prompts"]) == keep.sum()
  np.testing.assert_allclose(method.logits(trainable, frozen, img.astype(np.float32)), logits,
                             rtol=1e-5, atol=1e-5)


def test_prompt_file_errors_name_the_class(tiny, tmp_path):
  backbone, _ = tiny
  prompts = synthetic_prompts(CLASSES, extra=1)
  del prompts["llm_prompts"]["pituitary tumor"]
  with pytest.raises(ValueError, match="no LLM prompts for class 'pituitary tumor'"):
    biomedcoop.build(backbone, _task(prompts=prompts), {"n_prompts": N_PROMPTS})
  prompts = synthetic_prompts(CLASSES)
  prompts["llm_prompts"]["normal brain"] = prompts["llm_prompts"]["normal brain"][:4]
  with pytest.raises(ValueError, match=r"class 'normal brain' has 4 LLM prompts, fewer than "
                                       r"n_prompts=6"):
    biomedcoop.build(backbone, _task(prompts=prompts), {"n_prompts": N_PROMPTS})
  with pytest.raises(ValueError, match="biomedcoop needs LLM prompt ensembles.*data.llm_prompts"):
    biomedcoop.build(backbone, Task(CLASSES), {})
  with pytest.raises(ValueError, match=r"unknown key\(s\) \['lambda_scm'\]"):
    biomedcoop.build(backbone, _task(), {"lambda_scm": 1.0})
  # More prompts than configured: the first n are used.
  method = biomedcoop.build(backbone, _task(prompts=synthetic_prompts(CLASSES, extra=3)),
                            {"n_prompts": N_PROMPTS})
  assert [len(p) for p in method.llm_prompts] == [N_PROMPTS] * 4


def test_published_prompt_file(tiny, shared_dir):
  path = shared_dir / "data" / "biomedcoop" / "prompt_ensembles.json"
  if not path.is_file():
    pytest.skip(f"{path} absent")
  backbone, _ = tiny
  task = setup.make_task(("glioma tumor", "tumor"), _data_cfg(str(path)))
  with pytest.raises(ValueError, match="class 'tumor' has 47 LLM prompts, fewer than "
                                       "n_prompts=50"):
    biomedcoop.build(backbone, task, {})
  task = setup.make_task(("glioma tumor", "meningioma tumor", "pituitary tumor", "normal brain"),
                         _data_cfg(str(path)))
  method = biomedcoop.build(backbone, task, {})
  raw = json.loads(path.read_text())["llm_prompts"]
  assert [list(p) for p in method.llm_prompts] == [raw[c][:50] for c in task.classnames]
  with pytest.raises(ValueError, match="no LLM prompts for class 'CNV'"):
    biomedcoop.build(backbone, setup.make_task(("CNV", "drusen"), _data_cfg(str(path))), {})


def test_text_dropout_is_the_reference_train_mode(tiny):
  """Default: BERT's dropout acts on the learned prompts during training, driven by the step's
  rng (same rng, same loss; another rng, another loss); text_dropout=False and evaluation are
  deterministic; with the config's dropout rates at 0 the train mode equals eval mode."""
  backbone, params = tiny
  method = biomedcoop.build(backbone, _task(), {"n_prompts": N_PROMPTS})
  assert method.opts.text_dropout  # the reference's behaviour is the default
  frozen = {"backbone": params, **method.prepare(params)}
  trainable = method.init(jax.random.key(0), frozen)
  batch = tiny_backbone.with_features(method, _batch(), frozen)
  loss = jax.jit(lambda rng: method.loss(trainable, frozen, batch, rng)[0])
  a, a2, b = loss(jax.random.key(1)), loss(jax.random.key(1)), loss(jax.random.key(2))
  assert a == a2 and a != b
  off = biomedcoop.build(backbone, _task(), {"n_prompts": N_PROMPTS, "text_dropout": False})
  det = off.loss(trainable, frozen, batch, jax.random.key(1))[0]
  assert det == off.loss(trainable, frozen, batch, jax.random.key(2))[0] and det != a
  t_eval = method.text_features(trainable, frozen)
  np.testing.assert_array_equal(t_eval, off.text_features(trainable, frozen))
  # Dropout is the only difference between the modes: at rate 0 they agree.
  import dataclasses
  from biomedjax.methods.base import Backbone
  from biomedjax.models.clip import CLIP
  cfg = backbone.cfg
  cfg0 = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, hidden_dropout=0.0,
                                                           attention_dropout=0.0))
  no_rate = biomedcoop.build(Backbone(CLIP(cfg0), backbone.tokenizer), _task(),
                             {"n_prompts": N_PROMPTS})
  np.testing.assert_allclose(no_rate.text_features(trainable, frozen, jax.random.key(3)),
                             t_eval, rtol=1e-5, atol=1e-6)


def _data_cfg(llm_prompts):
  import ml_collections
  return ml_collections.ConfigDict(dict(template="a photo of a {}.", llm_prompts=llm_prompts))


def test_train_and_evaluate_end_to_end(tmp_path):
  from biomedjax.train.loop import train_and_evaluate
  from configs import biomedcoop as cfg_lib
  classes = [f"class_{c:02d}" for c in range(4)]
  prompt_file = tmp_path / "prompts.json"
  prompt_file.write_text(json.dumps(synthetic_prompts(classes, n=50)))
  config = cfg_lib.get_config(f"dataset=synthetic,shots=8,prompts={prompt_file}")
  assert (config.method.lambda_sccm, config.method.lambda_kdsp, config.method.tau) == (
      0.5, 0.25, 1.5)
  config.model.preset, config.model.init = "tiny", ""
  config.data.synthetic.per_class = 24
  config.data.batch_size = 8
  config.optim.lr, config.optim.epochs = 0.02, 8
  # Random tiny text tower: one shared context cannot pull the classes apart, a class-specific
  # one can (as configs/demo.py does for CoOp).
  config.method.csc = True
  config.train.progress = False
  results = train_and_evaluate(config, tmp_path / "run")
  assert (tmp_path / "run" / "results.json").is_file()
  assert results["method"] == "biomedcoop"
  assert results["test"]["accuracy"] > 0.4, results["test"]  # 4 classes: chance is 0.25


def test_config_tables_and_sweeps():
  from configs import biomedcoop as cfg_lib
  # Typed here from the spec: (lambda_sccm, lambda_kdsp, tau) few-shot (the base-to-novel table
  # is checked against the spec's text in tests/configs/test_config_tables.py).
  spec = {"btmri": (0.5, 0.25, 1.5), "busi": (0.75, 0.75, 1.5), "chmnist": (0.25, 0.25, 1.5),
          "covid_19": (0.5, 2.0, 1.5), "ctkidney": (1.0, 0.5, 1.5),
          "dermamnist": (5.0, 20.0, 1.5), "kneexray": (5.0, 20.0, 1.75),
          "kvasir": (0.75, 0.75, 1.5), "lungcolon": (0.5, 0.5, 1.5),
          "octmnist": (1.0, 0.75, 1.5), "retina": (0.25, 0.25, 1.5)}
  for dataset, want in spec.items():
    c = cfg_lib.get_config(f"dataset={dataset},prompts=p.json")
    m = c.method
    assert (m.lambda_sccm, m.lambda_kdsp, m.tau) == want, dataset
    assert (c.data.batch_size, c.optim.lr, c.optim.epochs, c.optim.warmup_lr) == (
        4, 0.0025, 100, 1e-5)
    assert (m.n_ctx, m.ctx_init, m.csc, m.n_prompts) == (4, "a photo of a", False, 50)
    assert c.data.llm_prompts == "p.json"
  for dataset, want in {"btmri": (0.5, 0.5, 1.25), "kvasir": (1.0, 1.0, 1.25)}.items():
    c = cfg_lib.get_config(f"dataset={dataset},setting=base2novel")
    assert (c.method.lambda_sccm, c.method.lambda_kdsp, c.method.tau) == want
    assert c.optim.epochs == 50 and c.data.setting == "base2novel"
  points = []
  cfg_lib.sweep(lambda **kw: points.append(kw["arg"]), None)
  assert len(points) == 11 * 5 * 3 and len(set(points)) == len(points)
  points = []
  cfg_lib.sweep(lambda **kw: points.append(kw["arg"]), "setting=base2novel,prompts=/x.json")
  # launch.py merges the command's own args (prompts=...) into each point
  # (tests/train/test_train.py)
  assert len(points) == 10 * 3 and all("setting=base2novel" in p and "shots=16" in p
                                       for p in points)
  assert not any("dataset=busi" in p for p in points)  # no base-to-novel config for BUSI
  with pytest.raises(ValueError, match="no base-to-novel config for 'busi'"):
    cfg_lib.get_config("dataset=busi,setting=base2novel")
  with pytest.raises(ValueError, match="setting='zero'"):
    cfg_lib.get_config("setting=zero")


def test_every_catalog_dataset_has_llm_prompts_in_the_published_file(shared_dir):
  from biomedjax.data import catalog
  path = shared_dir / "data" / "biomedcoop" / "prompt_ensembles.json"
  if not path.exists():
    pytest.skip(f"{path} absent")
  keys = set(json.loads(path.read_text())["llm_prompts"])
  for key, info in catalog.DATASETS.items():
    assert set(info.classnames) <= keys, (key, sorted(set(info.classnames) - keys))
