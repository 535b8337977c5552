"""The IU-Xray study end to end through the engine (configs/iuxray.py, tiny random backbone):
zero-shot, linear probe and fine-tuning on a synthetic IU-Xray tree, then the three tables and a
Grad-CAM overlay from the runs."""

import json

import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from biomedjax.studies import gradcam, multilabel_study
from biomedjax.data import iuxray
from biomedjax.train.loop import train_and_evaluate
from configs import iuxray as iuxray_config
from tests import iuxray_fixture


def _config(mode, root):
  c = iuxray_config.get_config(f"mode={mode},runlocal=True,root={root}")
  c.model.preset = "tiny"
  c.data.test_batch_size = 16
  c.train.progress = False
  c.train.log_every_steps = 1
  return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = iuxray_fixture.write_tree(tmp_path_factory.mktemp("iuxray"))
  out = tmp_path_factory.mktemp("runs")
  results = {}
  for mode in iuxray_config.MODES:
    results[mode] = train_and_evaluate(_config(mode, root), out / mode)
  return root, out, results


def test_three_modes_run_and_report(runs):
  root, out, results = runs
  for mode, r in results.items():
    assert r["task_kind"] == "multilabel"
    assert r["test"]["num_examples"] == 9 and r["val"]["num_examples"] == 9  # 60 uids: 42/9/9
    assert set(r["test"]["per_label"]) == set(iuxray.LABELS)
    assert json.loads((out / mode / "results.json").read_text())["method"] == r["method"]
    assert (out / mode / multilabel_study.SETTING_FILE).is_file()
  assert results["zeroshot"]["method"] == "zeroshot"
  assert results["linear_probe"]["method"] == "head_probe"
  assert results["finetune"]["method"] == "finetune"
  losses = [loss for _, loss in results["finetune"]["train_loss"]]
  assert len(losses) >= 2 and np.isfinite(losses).all()


def test_finetune_trains_only_the_tower_and_head(runs):
  _, out, _ = runs
  ckpt_dir = out / "finetune" / "checkpoints"
  step = max(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
  with ocp.StandardCheckpointer() as ckptr:
    meta = ckptr.metadata(ckpt_dir / str(step) / "state")
  tree = getattr(meta, "item_metadata", meta)
  assert set(tree["trainable"]) == {"visual", "head"}  # the text tower is never trained


def test_study_tables_and_gradcam_from_runs(runs, tmp_path):
  _, out, _ = runs
  results = multilabel_study.write_study([out / m for m in iuxray_config.MODES], tmp_path / "t")
  assert [r["name"] for r in results] == ["zs", "lp", "ft"]
  assert results[0]["rule_b"] == "dot>0" and results[1]["rule_b"] == "logit>0"
  for name in ("table1_overall", "table2_per_label", "table3_per_domain"):
    text = (tmp_path / "t" / f"{name}.md").read_text()
    assert "| zs |" in text and "| lp |" in text and "| ft |" in text
  setting = multilabel_study.load_setting(out / "finetune")
  assert setting["embeddings"].shape[0] == 9 and setting["minutes"] > 0
  # Each run's results.json carries the same numbers (what the published comparison reads).
  for mode, r in zip(iuxray_config.MODES, results):
    recorded = json.loads((out / mode / "results.json").read_text())["multilabel_study"]
    assert recorded == json.loads(json.dumps(
        {k: v for k, v in r.items() if not k.startswith("report_rule_")}))
  from biomedjax.published import compare
  text = compare.compare([out], "iuxray_table1", tmp_path / "paper")
  ft = results[2]["table1"]["macro_f1"]
  row = next(line for line in text.splitlines() if "| ft macro-F1 (rowminmax@0.5) |" in line)
  assert row.startswith("| RANDOM |") and f"| {ft:.3f} ± 0.000 (1) | 0.235 |" in row


def test_gradcam_cli_on_the_runs(runs, tmp_path):
  """--workdir: the probe's head (pretrained tower) and the fine-tuned tower + head."""
  import shutil

  from biomedjax.models import biomedclip as bc
  from biomedjax.models import config as model_config
  root, out, _ = runs
  model_dir = tmp_path / "model"  # the runs' random backbone, in the converted layout
  cfg = model_config.tiny()
  model_dir.mkdir()
  (model_dir / bc.CONFIG_FILE).write_text(cfg.to_json())
  bc.save_params(model_dir / bc.PARAMS_DIR, bc.init_params(cfg))
  shutil.copytree(out / "finetune" / "random_tokenizer", model_dir / bc.TOKENIZER_DIR)
  image = next((root / "images" / "images_normalized").glob("*Frontal*.png"))
  maps = {}
  for mode in ("zeroshot", "linear_probe", "finetune"):
    png = tmp_path / f"{mode}.png"
    assert gradcam.main(["--model", str(model_dir), "--workdir", str(out / mode), "--image",
                         str(image), "--label", "Cardiomegaly", "--out", str(png),
                         "--blocks", "-2", "--save-map", str(tmp_path / f"{mode}.npy")]) == 0
    assert Image.open(png).size == (224, 224)
    maps[mode] = np.load(tmp_path / f"{mode}.npy")
  assert not np.allclose(maps["linear_probe"], maps["finetune"])  # the tuned tower is used
  assert gradcam.main(["--model", str(model_dir), "--workdir", str(out / "finetune"), "--image",
                       str(image), "--label", "Nodule", "--out", str(tmp_path / "x.png")]) == 2
