"""The frozen tower's train-mode BatchNorm as run state (``biomedjax/train/tower.py``), end to end.

BiomedCoOp's PMC-CLIP trainer registers its whole wrapper with Dassl
(``trainers/BiomedCoOp/biomedcoop_pmcclip.py:330``), so ``set_model_mode("train")`` puts the
frozen ResNet in train mode every epoch and each step runs it twice on the batch (:209, :223
under ``no_grad``): the running statistics move twice per step and ``test()`` evaluates with the
drifted ones. One run of BiomedCoOp on a converted tiny PMC-CLIP (random torch weights written as
the three files a user downloads, ``tests/parity/pmcclip_fixture.py``) and the real BTMRI sample
serves every check:

* parity: the torch ``ModifiedResNet`` of the same files, in train mode, fed the run's batches
  (the engine's own iterator, replayed) twice per step: its running statistics equal the run's
  (checkpointed, and in the trained-state file); the run's test logits equal the torch tower's
  eval features under those statistics against the run's text features;
* SIGINT mid-run, then the same call: the resumed run's results, history and statistics equal
  the uninterrupted run's;
* ``--config.model.tower_mode=eval``: the statistics are never touched.

CalibPrompt is not run here: its reference registers only the prompt learner
(``trainers/classification/coop.py:371``, ``coop_biomedclip.py:292``, ``coop_medclip.py:316``)
and its MedCLIP trainer builds the Swin tower (``coop_medclip.py:25``), so its tower is always in
eval mode (``tower_train_passes = 0``, the default).
"""

import copy
import json
import logging
import pathlib
import subprocess
import sys

import jax
import ml_collections as mlc
import numpy as np
import orbax.checkpoint as ocp
import pytest
import torch

from biomedjax.data.pipeline import make_train_iterator, train_options
from biomedjax.models import config as model_config
from biomedjax.tools import trained
from biomedjax.train import lifecycle, loop, setup as run_setup, sharding
from configs import biomedcoop
from tests import interrupt
from tests.parity import pmcclip_fixture as fx

REPO = pathlib.Path(__file__).resolve().parents[2]
EPOCHS, STOP_AFTER = 2, 3  # 8 images (2 shots x 4 classes), batch 4: 2 steps per epoch
TOTAL = 2 * EPOCHS


@pytest.fixture(scope="module")
def setup(shared_dir, tmp_path_factory):
  """(config factory, converted dir, torch reference) for tiny BiomedCoOp runs on BTMRI."""
  btmri = shared_dir / "data" / "images" / "BTMRI"
  prompts = shared_dir / "data" / "biomedcoop" / "prompt_ensembles.json"
  if not (btmri / "split_BTMRI.json").exists() or not prompts.exists():
    pytest.skip("BTMRI sample or prompt ensembles absent")
  src = tmp_path_factory.mktemp("pmc_src")
  ckpt, tok, ref = fx.make_files(src, "tiny_pmcclip", seed=3)
  out = src / "converted"
  run = subprocess.run([sys.executable, "-m", "convert", "--src", str(ckpt), "--tokenizer",
                        str(tok), "--preset", "tiny_pmcclip", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-2000:]

  def config(**model):
    c = biomedcoop.get_config(f"dataset=btmri,shots=2,seed=1,prompts={prompts}")
    c.data.split_file = str(btmri / "split_BTMRI.json")
    c.data.image_root = str(btmri / "images")
    c.data.batch_size, c.data.test_batch_size = 4, 32
    c.method.n_prompts = 4
    c.optim.epochs = EPOCHS
    c.model.init = str(out)
    c.train.progress = False
    c.train.ckpt_every_steps = 1
    for k, v in model.items():
      c.model[k] = v
    return c
  return config, out, ref


@pytest.fixture(scope="module")
def runs(setup, tmp_path_factory):
  """The uninterrupted run and the one stopped by SIGINT after STOP_AFTER steps, resumed."""
  config, _, _ = setup
  root = tmp_path_factory.mktemp("tower_runs")
  loop.train_and_evaluate(config(), root / "whole")
  with interrupt.sigint_at_step(loop.SingleStepper, STOP_AFTER):
    with pytest.raises(lifecycle.Interrupted, match=f"step {STOP_AFTER} of {TOTAL}"):
      loop.train_and_evaluate(config(), root / "resumed")
  loop.train_and_evaluate(config(), root / "resumed")
  return root / "whole", root / "resumed"


def _checkpoint(workdir, step=TOTAL):
  with ocp.CheckpointManager(pathlib.Path(workdir).absolute() / "checkpoints") as mngr:
    return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


def _torch_stats(encoder) -> dict:
  """flax ``batch_stats/visual`` path -> (running_mean, running_var) of the torch tower."""
  out = {}
  for name, m in encoder.named_modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      path = name.replace(".", "_", 1) if name.startswith("layer") else name
      out[path.replace(".", "_")] = (m.running_mean.numpy().copy(), m.running_var.numpy().copy())
  return out


def _ours(stats: dict, path: str):
  node = stats["visual"]
  for part in path.split("/"):
    node = node[part]
  return np.asarray(node["mean"]), np.asarray(node["var"])


def _flax_path(torch_name: str) -> str:
  """``layer1_0_bn1`` / ``layer3_0_downsample_1`` / ``bn1`` -> the flax module path."""
  if not torch_name.startswith("layer"):
    return torch_name
  block, rest = torch_name[:8], torch_name[9:]
  return f"{block}/{rest}"


def test_running_statistics_and_eval_logits_match_the_reference(setup, runs, tmp_path):
  config, _, ref = setup
  whole, _ = runs
  c = config()
  data = run_setup.build_data(c.data, c.seed, tmp_path)  # the run's data, iterator and batches
  it = make_train_iterator(data.splits["train"], mesh=sharding.make_mesh(4), global_batch_size=4,
                           seed=c.seed, **train_options(c.data))
  cfg = model_config.tiny_pmcclip()
  mean, std = np.asarray(cfg.image_mean, np.float32), np.asarray(cfg.image_std, np.float32)
  encoder = copy.deepcopy(ref.image_encoder)
  converted = _torch_stats(encoder)
  encoder.train()  # set_model_mode("train") on the registered wrapper
  try:
    for _ in range(TOTAL):
      x = (np.asarray(next(it)["image"], np.float32) / 255.0 - mean) / std
      x = torch.from_numpy(x).permute(0, 3, 1, 2)
      with torch.no_grad():
        encoder(x)  # :209, the student's features
        encoder(x)  # :223, the teacher's under no_grad: a second update
  finally:
    encoder.eval()
  want = _torch_stats(encoder)
  saved = _checkpoint(whole)["tower"]["batch_stats"]
  exported = trained.load_backbone_state(whole / trained.STATE_FILE)["batch_stats"]
  assert len(jax.tree.leaves(saved)) == 2 * len(want)
  for name, (m, v) in want.items():
    path = _flax_path(name)
    for got in (_ours({"visual": saved["visual"]}, path),
                _ours({"visual": exported["visual"]}, path)):
      np.testing.assert_allclose(got[0], m, rtol=2e-4, atol=2e-5, err_msg=name)
      np.testing.assert_allclose(got[1], v, rtol=2e-4, atol=2e-5, err_msg=name)
    assert np.abs(converted[name][1] - v).max() > 1e-3, name  # they did drift
  # Evaluation: the torch tower in eval mode under the drifted statistics, the run's text.
  clf = trained.TrainedClassifier.load(whole / trained.STATE_FILE)
  test = data.splits["test"]
  pixels = np.stack([clf.preprocess_file(ex.path) for ex in test.examples])
  with torch.no_grad():
    x = torch.from_numpy((pixels.astype(np.float32) / 255.0 - mean) / std).permute(0, 3, 1, 2)
    img = encoder(x).numpy().astype(np.float64)
  text = np.asarray(clf.method.text_features(clf.trainable, clf.frozen, None), np.float64)
  img /= np.linalg.norm(img, axis=-1, keepdims=True)
  text /= np.linalg.norm(text, axis=-1, keepdims=True)
  want_logits = np.exp(fx.LOGIT_SCALE) * img @ text.T
  saved_logits = np.load(whole / "predictions" / "test.npz")["logits"]
  np.testing.assert_allclose(saved_logits, want_logits, rtol=1e-4, atol=2e-3)
  np.testing.assert_allclose(clf.logits_of_pixels(pixels), want_logits, rtol=1e-4, atol=2e-3)


def test_sigint_then_resume_equals_the_uninterrupted_run(runs):
  whole, resumed = runs
  a, b = _checkpoint(whole), _checkpoint(resumed)
  jax.tree.map(np.testing.assert_array_equal, b["tower"], a["tower"])
  np.testing.assert_array_equal(b["trainable"]["ctx"], a["trainable"]["ctx"])
  ours, ref = (json.loads((d / "results.json").read_text()) for d in (resumed, whole))
  assert ours["test"] == ref["test"]
  assert ours["train_loss"] == ref["train_loss"]
  jax.tree.map(np.testing.assert_array_equal,
               trained.load_backbone_state(resumed / trained.STATE_FILE),
               trained.load_backbone_state(whole / trained.STATE_FILE))


def test_tower_mode_eval_leaves_the_statistics_untouched(setup, tmp_path, caplog):
  config, _, _ = setup
  views = config()
  views.data.views = "precomputed"  # cannot apply to a drifting tower: online, said once
  with caplog.at_level(logging.INFO, logger="biomedjax"):
    assert loop.prepare(views, tmp_path / "views").backbone_state
  assert sum("encodes the pixels online" in r.getMessage() for r in caplog.records) == 1
  c = config(tower_mode="eval")
  c.optim.epochs, c.optim.warmup_epochs = 1, 0
  run = loop.prepare(c, tmp_path)
  converted = jax.device_get(run.params["batch_stats"])
  loop.train(run.lock())
  assert run.backbone_state == {} and "tower" not in _checkpoint(tmp_path, 2)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(run.frozen["backbone"]["batch_stats"]),
               converted)
  for bad, match in ((config(tower_mode="train"), "tower_mode='train'"),
                     (config(), "early_stopping_patience=2 picks an earlier epoch")):
    bad.train.early_stopping_patience = 2 if match.startswith("early") else 0
    with pytest.raises(ValueError, match=match):
      loop.prepare(bad, tmp_path / "bad")
