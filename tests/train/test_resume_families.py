"""Ctrl-C and resume on the newer towers (issue 24): BiomedCoOp and CalibPrompt on the tiny
random MedCLIP (Swin) and PMC-CLIP (ResNet) presets, on the real BTMRI sample. A run stopped by
SIGINT after STOP_AFTER steps and started again ends with the uninterrupted run's results and
loss history. BiomedCoOp on PMC-CLIP, whose tower's BatchNorm statistics are run state, is
checked with the statistics and against torch in tests/train/test_tower_state.py; CalibPrompt
keeps every tower in eval mode (its reference registers only the prompt learner)."""

import json

import numpy as np
import pytest

from biomedjax.train import lifecycle, loop
from configs import biomedcoop, calibprompt
from tests import interrupt

EPOCHS, STOP_AFTER = 2, 3  # 8 images (2 shots x 4 classes), batch 4: 2 steps per epoch
TOTAL = 2 * EPOCHS
CASES = [("tiny_medclip", "biomedcoop"), ("tiny_medclip", "calibprompt"),
         ("tiny_pmcclip", "calibprompt")]


def _config(shared_dir, preset, method):
  btmri = shared_dir / "data" / "images" / "BTMRI"
  prompts = shared_dir / "data" / "biomedcoop" / "prompt_ensembles.json"
  if not (btmri / "split_BTMRI.json").exists() or not prompts.exists():
    pytest.skip("BTMRI sample or prompt ensembles absent")
  if method == "biomedcoop":
    c = biomedcoop.get_config(f"dataset=btmri,shots=2,seed=1,prompts={prompts}")
    c.method.n_prompts = 4
  else:
    c = calibprompt.get_config("dataset=btmri,shots=2,seed=1,runlocal")
  c.model.preset, c.model.init = preset, ""
  c.data.split_file = str(btmri / "split_BTMRI.json")
  c.data.image_root = str(btmri / "images")
  c.data.batch_size, c.data.test_batch_size = 4, 32
  c.data.epoch_drop_last = False
  c.optim.epochs = EPOCHS
  c.train.progress = False
  c.train.ckpt_every_steps = 1
  c.eval.reliability = "none"
  return c


@pytest.mark.parametrize("preset, method", CASES)
def test_sigint_then_resume_equals_the_uninterrupted_run(shared_dir, tmp_path, preset, method):
  config = _config(shared_dir, preset, method)
  loop.train_and_evaluate(config, tmp_path / "whole")
  with interrupt.sigint_at_step(loop.SingleStepper, STOP_AFTER):
    with pytest.raises(lifecycle.Interrupted, match=f"step {STOP_AFTER} of {TOTAL}"):
      loop.train_and_evaluate(_config(shared_dir, preset, method), tmp_path / "resumed")
  loop.train_and_evaluate(_config(shared_dir, preset, method), tmp_path / "resumed")
  whole, resumed = (json.loads((tmp_path / d / "results.json").read_text())
                    for d in ("whole", "resumed"))
  assert resumed["test"]["confusion_matrix"] == whole["test"]["confusion_matrix"]
  assert resumed["test"]["nll"] == pytest.approx(whole["test"]["nll"], rel=1e-6)
  assert [s for s, _ in resumed["train_loss"]] == [s for s, _ in whole["train_loss"]]
  np.testing.assert_allclose([v for _, v in resumed["train_loss"]],
                             [v for _, v in whole["train_loss"]], rtol=1e-6)
