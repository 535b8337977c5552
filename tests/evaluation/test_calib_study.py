"""CalibPrompt's whole study: per-pair settings and protocol against the reference files (one test
per entry, each quoting the file:line it transcribes), the study datasets, and a runlocal run of
each of the five datasets (and of MedCLIP on COVID and RSNA18, tiny_medclip) in the reference
layout with the CalibPrompt objective and with CE,
reported through ``biomedjax.report`` with the paper-shaped study table.

Reference files: ``iabh1shekbasu/CalibPrompt`` at its released commit.
"""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from biomedjax import calibration_losses, report
from biomedjax.evaluation import calib_study
from biomedjax.data import calibprompt_layout as layout
from biomedjax.models import config as model_config
from configs import calibprompt as cfg_module

# (backbone, dataset, alpha of LS = SMAC, w_AS, where the reference sets them)
PAIRS = [
    ("plip", "kather", 0.05, 0.01, "run/classification/fewshot/all_fewshot_plip.sh:51"),
    ("plip", "pannuke", 0.2, 0.1, "run/classification/fewshot/all_fewshot_plip.sh:52"),
    ("plip", "digestpath", 0.03, 0.001, "run/classification/fewshot/all_fewshot_plip.sh:53"),
    ("quiltnet", "kather", 0.01, 1.0, "run/classification/fewshot/all_fewshot_quiltnet.sh:51"),
    ("quiltnet", "pannuke", 0.1, 0.001, "run/classification/fewshot/all_fewshot_quiltnet.sh:52"),
    ("quiltnet", "digestpath", 0.05, 0.001,
     "run/classification/fewshot/all_fewshot_quiltnet.sh:53"),
    ("biomedclip", "covid", 0.1, 3.0,
     "configs/trainers/CoOp_BioMedCLIP/vit_b32_biomedclip_c16_ep50_batch16.yaml:47,51,54"),
    ("biomedclip", "rsna18", 0.1, 3.0,
     "configs/trainers/CoOp_BioMedCLIP/vit_b32_biomedclip_c16_ep50_batch16.yaml:47,51,54"),
    ("medclip", "covid", 0.2, 1.0,
     "configs/trainers/CoOp_MedCLIP/vit_b32_medclip_c16_ep50_batch16.yaml:48,52,55"),
    ("medclip", "rsna18", 0.2, 1.0,
     "configs/trainers/CoOp_MedCLIP/vit_b32_medclip_c16_ep50_batch16.yaml:48,52,55"),
]

# (backbone, protocol key, reference value, where)
_Y = {"plip": "configs/trainers/CoOp/vit_b32_plip_c16_ep50_batch16.yaml",
      "quiltnet": "configs/trainers/CoOp/vit_b32_quiltnet_c16_ep50_batch16.yaml",
      "biomedclip": "configs/trainers/CoOp_BioMedCLIP/vit_b32_biomedclip_c16_ep50_batch16.yaml",
      "medclip": "configs/trainers/CoOp_MedCLIP/vit_b32_medclip_c16_ep50_batch16.yaml"}
_D = {b: f"run/classification/fewshot/all_fewshot_{b}.sh" for b in _Y}
# PLIP and QuiltNet: the same lines of their two CoOp yamls and drivers
PROTOCOL = [(b, key, value, f"{(_D if key in ('shots', 'seeds') else _Y)[b]}:{line}")
            for b in ("plip", "quiltnet")
            for key, value, line in (("shots", 8, 10), ("seeds", (1,), 9), ("batch_size", 16, 4),
                                     ("lr", 0.002, 17), ("epochs", 50, 18), ("warmup_lr", 1e-5, 22),
                                     ("n_ctx", 16, 33), ("precision", "fp16", 35),
                                     ("pixel_norm", "clip", "11-12"))] + [
    ("biomedclip", "shots", 8, f"{_D['biomedclip']}:13"),
    ("biomedclip", "seeds", (1,), f"{_D['biomedclip']}:11"),
    ("biomedclip", "batch_size", 16, f"{_Y['biomedclip']}:4"),
    ("biomedclip", "lr", 0.002, f"{_Y['biomedclip']}:15"),
    ("biomedclip", "epochs", 50, f"{_Y['biomedclip']}:17"),
    ("biomedclip", "warmup_lr", 1e-5, f"{_Y['biomedclip']}:21"),
    ("biomedclip", "n_ctx", 16, "train.py:92 (the yaml sets none)"),
    ("biomedclip", "precision", "fp32", "train.py:95 fp16, never cast: coop_biomedclip.py:267"),
    ("medclip", "shots", 8, f"{_D['medclip']}:11"), ("medclip", "seeds", (1,), f"{_D['medclip']}:9"),
    ("medclip", "batch_size", 16, f"{_Y['medclip']}:4"),
    ("medclip", "lr", 0.002, f"{_Y['medclip']}:17"),
    ("medclip", "epochs", 50, f"{_Y['medclip']}:18"),
    ("medclip", "warmup_lr", 1e-3, f"{_Y['medclip']}:22"),
    ("medclip", "n_ctx", 16, "train.py:92 (the yaml sets none)"),
    # INPUT.PIXEL_MEAN/STD = OpenAI CLIP's, applied by Dassl's build_transform
    # (Dassl.pytorch/dassl/data/transforms/transforms.py:198,305-309); for MedCLIP not its own
    # grayscale mean/std (models/medclip/constants.py:8-9)
    ("biomedclip", "pixel_norm", "clip", f"{_Y['biomedclip']}:11-12"),
    ("medclip", "pixel_norm", "clip", f"{_Y['medclip']}:11-12"),
]
# every backbone: Dassl SGD defaults (Dassl.pytorch/dassl/config/defaults.py:153-154), cosine with
# one constant warm-up epoch (each trainer yaml, OPTIM block)
COMMON = dict(optimizer="sgd", momentum=0.9, weight_decay=5e-4, schedule="cosine",
              warmup_epochs=1, warmup_type="constant", test_batch_size=100, image_size=224)


def _has_family(backbone):
  return cfg_module.BACKBONES[backbone]["family"] in model_config.FAMILIES


@pytest.mark.parametrize("backbone,dataset,alpha,w_as,where", PAIRS,
                         ids=[f"{b}-{d}" for b, d, *_ in PAIRS])
def test_pair_setting(backbone, dataset, alpha, w_as, where):
  assert cfg_module.alpha_and_w_as(backbone, dataset) == (alpha, w_as), where
  loss = cfg_module.loss_config(backbone, dataset)
  assert (loss["label_smoothing"], loss["terms"]) == (alpha, f"smac:1.0,as:{w_as}"), where
  ref = cfg_module.loss_config(backbone, dataset, "LS+SMAC+AS")  # the yaml's ENABLED_LOSSES
  assert ref == dict(data="none", label_smoothing=alpha, smoothing="reference",
                     terms=f"ls:1.0,smac:1.0,as:{float(w_as)!r}")
  assert dataset in cfg_module.STUDY[backbone]
  arg = f"backbone={backbone},dataset={dataset}"
  if not _has_family(backbone):  # MedCLIP before the medclip family is merged: said, not dropped
    with pytest.raises(ValueError, match="needs the 'medclip' model family"):
      cfg_module.get_config(arg)
    return
  c = cfg_module.get_config(arg)
  assert (c.loss.label_smoothing, c.loss.terms) == (alpha, f"smac:1.0,as:{w_as}")
  assert c.data.layout == "calibprompt" and c.data.template == layout.zero_shot_template(dataset)
  assert c.study_cell == f"calib:{backbone}:calibprompt"


@pytest.mark.parametrize("backbone,key,value,where", PROTOCOL,
                         ids=[f"{b}-{k}" for b, k, *_ in PROTOCOL])
def test_protocol_entry(backbone, key, value, where):
  assert cfg_module.PROTOCOL[backbone][key] == value, where
  assert {k: cfg_module.PROTOCOL[backbone][k] for k in COMMON} == COMMON
  if not _has_family(backbone):
    return
  c = cfg_module.get_config(f"backbone={backbone},dataset={cfg_module.STUDY[backbone][0]}")
  applied = {"shots": c.data.shots, "seeds": (c.seed,), "batch_size": c.data.batch_size,
             "lr": c.optim.lr, "epochs": c.optim.epochs, "warmup_lr": c.optim.warmup_lr,
             "n_ctx": c.method.n_ctx, "precision": "fp32" if c.model.compute_dtype == "float32"
             else c.model.compute_dtype, "pixel_norm": c.model.pixel_norm}
  if key == "precision" and value == "fp16":  # no fp16 path: float32, stated in the config doc
    assert applied[key] == "fp32"
  else:
    assert applied[key] == value, where
  assert (c.optim.name, c.optim.momentum, c.optim.weight_decay, c.optim.schedule,
          c.optim.warmup_epochs) == ("sgd", 0.9, 5e-4, "cosine", 1)
  assert c.data.epoch_drop_last and c.data.random_flip and c.data.test_batch_size == 100


def test_backbones_and_baselines():
  # PLIP and QuiltNet run in the openai family (ViT-B/32 with QuickGELU, models/clip/model.py:162)
  for b in ("plip", "quiltnet"):
    assert cfg_module.get_config(f"backbone={b},dataset=kather").model.preset == "clip_vit_b32"
    assert cfg_module.get_config(f"backbone={b},dataset=kather,runlocal").model.preset == \
        "tiny_clip"
  assert model_config.PRESETS["clip_vit_b32"]().vision.act == "quick_gelu"
  # a baseline row replaces CE (README: "set ENABLED_LOSSES to a single method")
  c = cfg_module.get_config("backbone=plip,dataset=pannuke,objective=FL")
  assert (c.loss.data, c.loss.terms) == ("none", "focal:1.0")
  assert c.study_cell == "calib:plip:FL"
  c = cfg_module.get_config("backbone=quiltnet,dataset=digestpath,objective=zeroshot")
  assert (c.method.name, c.data.shots) == ("zeroshot", 0)
  assert c.data.template == "An H&E image patch of {} tissue."
  with pytest.raises(ValueError, match="unknown reference loss 'XX'"):
    cfg_module.get_config("objective=XX")
  with pytest.raises(ValueError, match="backbone='clip'"):
    cfg_module.get_config("backbone=clip")
  assert calibration_losses.canonical("ZS_NORM") == "eccv_zs"


def test_pixel_norm_is_the_reference_yamls_with_medclips_own_as_an_option():
  """MedCLIP's study runs standardise with OpenAI CLIP's mean/std (CoOp_MedCLIP yaml:11-12), not
  MedCLIP's grayscale values; ``model.pixel_norm=model`` keeps the model's own."""
  from biomedjax.models import preprocess
  from biomedjax.train import setup
  c = cfg_module.get_config("backbone=medclip,dataset=covid,objective=zeroshot")
  assert c.model.pixel_norm == "clip"  # the zero-shot row too (ZeroshotCLIP yaml:11-12)
  medclip = model_config.medclip()
  assert medclip.image_mean == model_config.MEDCLIP_MEAN
  clip = setup.pixel_norm(medclip, "clip")
  assert (clip.image_mean, clip.image_std) == (preprocess.OPENAI_MEAN, preprocess.OPENAI_STD)
  assert clip.vision == medclip.vision and clip.text == medclip.text
  assert setup.pixel_norm(medclip, "model") is medclip
  with pytest.raises(ValueError, match=r"pixel_norm=imagenet: use one of \('model', 'clip'\)"):
    setup.pixel_norm(medclip, "imagenet")


# (dataset, classes in label order, template), from asif-hanif/baple
# datasets/dataset_preprocessing/<name>/classnames.txt and zsclip.py:36-42
DATASETS = [
    ("kather", ("adipose tissue", "background", "debris", "lymphocytes", "mucus",
                "smooth muscle", "normal colon mucosa", "cancer-associated stroma",
                "colorectal adenocarcinoma epithelium"), "An H&E image of {}."),
    ("pannuke", ("benign", "malignant"), "An H&E image patch of {} skin tissue."),
    ("digestpath", ("benign", "malignant"), "An H&E image patch of {} tissue."),
    ("covid", ("covid", "normal"), "A chest X-ray image of {} patient"),
    ("rsna18", ("lung opacity", "no lung opacity, not normal", "normal"),
     "A chest X-ray image of {} patient"),
]


@pytest.mark.parametrize("name,classes,template", DATASETS, ids=[d[0] for d in DATASETS])
def test_dataset(name, classes, template):
  d = layout.DATASETS[name]
  assert (d.classnames, d.template, d.num_classes) == (classes, template, len(classes))
  assert list(d.folders) == sorted(d.folders)


def _build(root, name, per=(2, 2)):
  """Synthetic class folders in the reference layout, with the reference's classnames.txt."""
  d = layout.DATASETS[name]
  rng = np.random.default_rng(0)
  for split, n in zip(("train", "test"), per):
    for k, folder in enumerate(d.folders):
      path = root / name / "images" / split / folder
      path.mkdir(parents=True, exist_ok=True)
      for i in range(n):
        pixels = (rng.random((16, 16, 3)) * 60 + 20 * k).astype(np.uint8)
        Image.fromarray(pixels).save(path / f"{folder}_{i}.png")
  (root / name / "classnames.txt").write_text(d.classnames_txt())


def test_wrong_classnames_are_refused(tmp_path):
  _build(tmp_path, "pannuke", (1, 1))
  (tmp_path / "pannuke" / "classnames.txt").write_text("benign tumour\nmalignant malignant\n")
  with pytest.raises(layout.SplitError, match="differ from the reference's pannuke classes"):
    layout.read_layout(tmp_path, "pannuke")


STUDY_RUNS = [("biomedclip", "covid"), ("biomedclip", "rsna18"), ("plip", "kather"),
              ("plip", "pannuke"), ("quiltnet", "digestpath"), ("medclip", "covid"),
              ("medclip", "rsna18")]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  """The five datasets x (CalibPrompt, CE), runlocal on the tiny preset of each backbone's
  family, and PLIP's zero-shot row on Kather: one process, 2 shots, 2 epochs, precomputed
  views, no diagrams (cost)."""
  from biomedjax.train.loop import train_and_evaluate
  root = tmp_path_factory.mktemp("calib_study")
  runs = {}
  for backbone, dataset in STUDY_RUNS:
    _build(root / "data", dataset)
    for objective in ("calibprompt", "CE") + (("zeroshot",) if dataset == "kather" else ()):
      c = cfg_module.get_config(f"backbone={backbone},dataset={dataset},objective={objective},"
                                f"runlocal,shots=2,root={root / 'data'}")
      if objective != "zeroshot":
        c.method.n_ctx = 4
        c.data.batch_size = 4
        c.data.views, c.data.view_cache = "precomputed", str(root / "views")
      c.eval.reliability = "none"
      c.train.progress = False
      workdir = root / "runs" / backbone / dataset / objective
      train_and_evaluate(c, workdir)
      runs[(backbone, dataset, objective)] = json.loads((workdir / "results.json").read_text())
  return root, runs


def test_study_runs_report_calibration(study):
  _, runs = study
  assert len(runs) == 15
  assert runs[("plip", "kather", "zeroshot")]["method"] == "zeroshot"
  for (backbone, dataset, objective), r in runs.items():
    cal = r["test"]["calibration"]
    assert {"ece", "mce", "ace", "ece_kde", "confidence"} <= set(cal), (dataset, objective)
    assert r["test"]["num_examples"] == 2 * layout.DATASETS[dataset].num_classes
    assert r["study_cell"] == f"calib:{backbone}:{objective}"
    assert r["dataset"] == dataset and r["shots"] == (0 if objective == "zeroshot" else 2)
    names = set(cal["per_class_ece"]["gt"])
    assert names == set(layout.DATASETS[dataset].classnames)


def test_study_table_written(study):
  root, runs = study
  text = report.make_report([root / "runs"], root / "report")
  assert text == (root / "report" / "report.md").read_text()
  assert "## CalibPrompt study: ECE (%) by objective" in text
  assert "RANDOM weights in some study runs" in text   # tiny presets: said beside the table
  # a study run's row is named by its cell, not by the three config keys that make it differ
  assert "| calibprompt [calib:medclip:CE] | covid | 2 | test |" in text
  assert "terms=ce:1.0" not in text and "study_cell=" not in text
  table = text.split("## CalibPrompt study: ECE")[1]
  header = [line for line in table.splitlines() if line.startswith("| objective |")][0]
  for col in ("PLIP · Kather", "PLIP · PanNuke", "QuiltNet · DigestPath", "BiomedCLIP · COVID",
              "BiomedCLIP · RSNA18", "MedCLIP · COVID"):
    assert col in header
  row = {line.split(" | ")[0][2:]: line for line in table.splitlines() if line.startswith("| ")}
  ece = runs[("plip", "pannuke", "CE")]["test"]["calibration"]["ece"]
  assert f"{ece:.2f} ± 0.00 [pub 17.82]" in row["CE"]
  ece = runs[("biomedclip", "rsna18", "calibprompt")]["test"]["calibration"]["ece"]
  assert f"{ece:.2f} ± 0.00 [pub 5.74]" in row["calibprompt"]
  ece = runs[("medclip", "covid", "calibprompt")]["test"]["calibration"]["ece"]
  assert f"{ece:.2f} ± 0.00 [pub 27.41]" in row["calibprompt"]
  ece = runs[("medclip", "rsna18", "CE")]["test"]["calibration"]["ece"]
  assert f"{ece:.2f} ± 0.00 [pub 17.21]" in row["CE"]
  ece = runs[("plip", "kather", "zeroshot")]["test"]["calibration"]["ece"]
  assert f"| {ece:.2f} ± 0.00 |" in row["zeroshot"]


def test_seed_aggregation_as_parse_test_res():
  rng = np.random.default_rng(0)
  runs, ece = [], []
  for seed in (1, 2, 3):
    e = float(rng.uniform(1, 20))
    ece.append(e)
    runs.append({"study_cell": "calib:plip:CE", "dataset": "kather", "shots": 8, "seed": seed,
                 "test": {"accuracy": 0.5 + seed / 10,
                          "calibration": {"ece": e, "mce": 1.0, "ace": 2.0, "ece_kde": 3.0}}})
  runs.append({"study_cell": "", "dataset": "kather", "shots": 8, "seed": 1,
               "test": {"accuracy": 0.1}})  # not a study run
  s = calib_study.summarize(runs)
  assert list(s) == [("plip", "kather", "CE", 8)]
  m = s[("plip", "kather", "CE", 8)]
  # parse_test_res.py:228-229: np.mean, np.std (population)
  assert m["ece"] == pytest.approx((np.mean(ece), np.std(ece), 3))
  assert m["accuracy"][:2] == pytest.approx((70.0, np.std([60.0, 70.0, 80.0])))
  ci = calib_study.summarize(runs, ci95=True)[("plip", "kather", "CE", 8)]["ece"][1]
  assert ci == pytest.approx(1.96 * np.std(ece) / np.sqrt(3))  # parse_test_res.py:61-62
  table = calib_study.summary_table(s)
  assert f"| PLIP | Kather | CE | 8 | 3 | {np.mean([60, 70, 80]):.2f} ± " in table


def test_calibprompt_passes_the_zero_shot_inputs(tmp_path):
  """ECCV / TMM terms read what the reference's ZeroshotCLIP computes with the same backbone:
  template text features, and exp(logit_scale) cos(batch image, template text) (coop.py:439-442)."""
  import jax
  import jax.numpy as jnp

  from biomedjax import objectives
  from biomedjax.methods import calibprompt, zeroshot
  from biomedjax.methods.base import Task
  from tests import tiny_backbone
  backbone, params = tiny_backbone.make(tmp_path)
  task = Task(("glioma tumor", "normal brain"), "a mri scan showing {}")
  obj = objectives.make(calibration_losses.reference_loss(["ECCV_ZS", "TEXT_MOMENT_MATCHING"]),
                        task)
  m = calibprompt.build(backbone, task, {"n_ctx": 4}, obj)
  frozen = {"backbone": params, **m.prepare(params)}
  zs_text = zeroshot.encode_prompts(backbone, params, ["a mri scan showing glioma tumor",
                                                       "a mri scan showing normal brain"])
  np.testing.assert_allclose(frozen["zero_shot_text_features"], zs_text, rtol=1e-6, atol=1e-6)
  trainable = m.init(jax.random.key(0), frozen)
  feats = jnp.asarray(np.random.default_rng(0).normal(size=(3, backbone.cfg.embed_dim)),
                      jnp.float32)
  batch = {"features": feats, "label": jnp.asarray([0, 1, 1], jnp.int32)}
  loss, _ = m.loss(trainable, frozen, batch, jax.random.key(0))
  unit = feats / jnp.linalg.norm(feats, axis=-1, keepdims=True)
  zs_logits = backbone.logit_scale(params) * unit @ zs_text.T
  logits = m.logits(trainable, frozen, feats)
  expected = (calibration_losses.eccv_zs(logits, batch["label"], zs_logits)
              + 5.0 * calibration_losses.text_moment_matching(m.text_features(trainable, frozen),
                                                              zs_text))
  assert float(loss) == pytest.approx(float(expected), rel=1e-5)
  # without such a term nothing zero-shot is computed
  assert "zero_shot_text_features" not in calibprompt.build(backbone, task, {}).prepare(params)
