"""A CalibPrompt run end to end on the tiny random preset: calibration block, temperature
scaling (no val split -> fitted on the few-shot train set), reliability PNGs, results.md; and
the BUSI sample (skipped when ../shared is absent) through the CalibPrompt config."""

import json

import numpy as np
import pytest

from biomedjax.evaluation import calibration
from biomedjax.train.loop import train_and_evaluate
from configs import calibprompt as cfg_module
from tests import prompt_method_checks


def _config(arg):
  c = cfg_module.get_config(arg)
  c.eval.temperature = "fit"
  c.method.n_ctx = 4
  return c


def test_calibprompt_run_writes_calibration(tmp_path):
  config = _config("dataset=synthetic,shots=4")
  config.data.synthetic.classes = 3
  config.data.synthetic.per_class = 12
  results = prompt_method_checks.tiny_run(config, tmp_path, epochs=2, lr=0.5)
  test = results["test"]
  cal = test["calibration"]
  assert {"ece", "mce", "ace", "ece_kde", "per_class_ece", "confidence"} <= set(cal)
  assert 0 <= cal["ece"] <= 100 and cal["settings"]["n_bins"] == 10
  t = results["temperature"]["value"]
  assert results["temperature"]["fitted_on"].startswith("val") or "train" in \
      results["temperature"]["fitted_on"]
  scaled = test["temperature_scaled"]
  assert scaled["temperature"] == t and scaled["accuracy"] == test["accuracy"]
  pngs = sorted(p.name for p in (tmp_path / "reliability").glob("*.png"))
  assert "test_overall.png" in pngs and "test_T_overall.png" in pngs
  assert any(p.startswith("test_gt_") for p in pngs)
  assert any(p.startswith("test_pred_") for p in pngs)
  assert not any(p.startswith("val_") for p in pngs)
  md = (tmp_path / "results.md").read_text()
  assert "MCE" in md and "ACE" in md


def test_bad_eval_option_fails_before_writing(tmp_path):
  config = _config("dataset=synthetic,shots=4")
  config.eval.temperature = "learned"
  with pytest.raises(ValueError, match="config.eval.temperature='learned'"):
    prompt_method_checks.tiny_run(config, tmp_path, epochs=1, lr=0.5)
  assert not (tmp_path / "config.json").exists()
  config.eval.temperature = "fit"
  config.loss.terms = "smac:1.0,as:x"
  with pytest.raises(ValueError, match="weight 'x' of loss term 'as'"):
    prompt_method_checks.tiny_run(config, tmp_path, epochs=2, lr=0.5)
  assert not (tmp_path / "config.json").exists()


def test_report_tables_and_plot(tmp_path):
  from biomedjax.evaluation import report
  rng = np.random.default_rng(0)
  for method in ("coop", "calibprompt"):
    for seed in (1, 2):
      logits = rng.normal(size=(60, 3)) * (4 if method == "coop" else 1)
      labels = rng.integers(0, 3, 60)
      block = {"accuracy": float(np.mean(logits.argmax(1) == labels)),
               "calibration": calibration.calibration_report(logits, labels, ("a", "b", "c"))}
      run = {"method": method, "dataset": "covid", "shots": 8, "seed": seed,
             "setting": "few_shot", "test": block}
      report.write_run_results(tmp_path / method / str(seed), run)
  text = report.make_report([tmp_path], tmp_path / "out")
  assert "## Calibration (%)" in text and "| calibprompt | covid | 8 | test |" in text
  ece = [r["test"]["calibration"]["ece"] for r in report.load_runs([tmp_path / "coop"])]
  assert f"{np.mean(ece):.2f} ± {np.std(ece):.2f}" in text
  assert (tmp_path / "out" / "calibration_vs_accuracy.png").stat().st_size > 10_000


@pytest.mark.slow
def test_busi_sample_run_and_report(shared_dir, tmp_path):
  """Acceptance: the real BUSI sample, tiny random backbone, 2 epochs: metrics, diagrams, report."""
  from biomedjax.evaluation import report
  busi = shared_dir / "data/images/BUSI"
  if not (busi / "split_BUSI.json").is_file():
    pytest.skip(f"{busi} has no split_BUSI.json")
  config = _config("dataset=busi,shots=4")
  config.data.split_file = str(busi / "split_BUSI.json")
  config.data.image_root = str(busi / "images")
  config.model.preset, config.model.init = "tiny", ""
  config.optim.epochs, config.train.progress, config.data.test_batch_size = 2, False, 64
  train_and_evaluate(config, tmp_path / "run")
  results = json.loads((tmp_path / "run" / "results.json").read_text())
  assert results["test"]["num_examples"] == 36 and results["temperature"]["fitted_on"] == "val"
  assert results["test"]["calibration"]["per_class_ece"]["gt"].keys() == {
      "benign tumor", "malignant tumor", "normal scan"}
  assert len(list((tmp_path / "run" / "reliability").glob("test_*.png"))) == 1 + 2 * 3 + 1
  text = report.make_report([tmp_path / "run"], tmp_path / "report")
  assert "| calibprompt | busi | 4 | test |" in text
  assert (tmp_path / "report" / "calibration_vs_accuracy.png").is_file()
