"""What a run and a report show: per-class P/R/F1 and the confusion matrix in results.md, the
per-run pictures, the few-shot curves (error bars, chance line, one panel per dataset), the
provenance, backbone groups with a random-weights warning, zero-shot as one K-independent column."""

import csv
import json

import numpy as np
import pytest

from biomedjax.evaluation import metrics, report
from biomedjax.tools import provenance

pytest.importorskip("matplotlib")

NAMES = {"btmri": ["glioma tumor", "meningioma tumor", "pituitary tumor", "normal brain"],
         "busi": ["benign tumor", "malignant tumor", "normal scan"]}
REAL = {"kind": "converted", "dir": "/ckpt/biomedclip", "manifest_sha256": "ab" * 32,
        "label": "biomedclip (abababababab)"}
RANDOM = {"kind": "random", "preset": "tiny", "label": "RANDOM tiny"}


def _split_report(dataset, quality, seed):
  names = NAMES[dataset]
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(len(names)), 10)
  logits = rng.normal(size=(labels.size, len(names)))
  logits[np.arange(labels.size), labels] += quality
  return metrics.classification_report(logits, labels, names)


def _write(root, method, dataset, shots, seed, backbone, quality, plots=True):
  results = dict(method=method, dataset=dataset, shots=shots, seed=seed, setting="few_shot",
                 test=_split_report(dataset, quality, seed),
                 provenance={"backbone": backbone, "method": {"name": method},
                             "versions": {"jax": "0.10.2"}, "git_commit": None,
                             "split_file": {"path": "s.json", "sha256": "cd" * 32}})
  workdir = root / f"{backbone['kind']}/{method}/{dataset}/{shots}/{seed}"
  report.write_run_results(workdir, results, plots=plots)
  return workdir, results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("runs")
  for dataset in NAMES:
    for seed in (1, 2, 3):
      for k in (1, 4, 16):
        _write(root, "coop", dataset, k, seed, REAL, 0.4 * np.log2(k) + 0.5, False)
        _write(root, "linear_probe", dataset, k, seed, REAL, 0.3 * np.log2(k) + 0.3, False)
        _write(root, "coop", dataset, k, seed, RANDOM, 0.1, False)
        _write(root, "zeroshot", dataset, k, seed, REAL, 1.0, False)  # same run under every K
  out = root / "report"
  return root, out, report.make_report([root], out)


def test_results_md_has_per_class_scores_confusion_matrix_and_provenance(tmp_path):
  workdir, results = _write(tmp_path, "coop", "busi", 4, 1, REAL, 1.0)
  text = (workdir / "results.md").read_text()
  row = results["test"]["per_class"]["malignant tumor"]
  assert (f"| malignant tumor | {100 * row['precision']:.2f} | {100 * row['recall']:.2f} | "
          f"{100 * row['f1']:.2f} | {row['support']} |") in text
  cm = results["test"]["confusion_matrix"]
  assert "| **normal scan** | " + " | ".join(map(str, cm[2])) + " |" in text
  assert "/ckpt/biomedclip" in text and "ab" * 32 in text and "cd" * 32 in text
  for name in ("confusion_matrix_test.png", "per_class_f1_test.png"):
    assert (workdir / name).stat().st_size > 5000


def test_random_backbone_run_says_so(tmp_path):
  workdir, _ = _write(tmp_path, "coop", "busi", 4, 1, RANDOM, 1.0)
  assert "RANDOM weights (RANDOM tiny)" in (workdir / "results.md").read_text()


def test_report_groups_by_backbone_and_warns_on_random_weights(runs):
  _, out, text = runs
  real, rand = text.index("# Backbone: biomedclip"), text.index("# Backbone: RANDOM tiny")
  assert real < rand and "WARNING: RANDOM weights" in text[rand:]
  assert "WARNING" not in text[real:rand]
  rows = list(csv.DictReader(open(out / "summary.csv")))
  assert {r["backbone"] for r in rows} == {"biomedclip (abababababab)", "RANDOM tiny"}
  assert (out / "fewshot_curve_biomedclip__abababababab.png").stat().st_size > 10000
  assert (out / "fewshot_curve_random_tiny.png").stat().st_size > 10000


def test_zero_shot_is_one_k_independent_column(runs):
  _, out, text = runs
  section = text[text.index("### busi"):]
  header, _, *rows = section.split("\n\n")[1].splitlines()
  assert header == "| method | any K | K=1 | K=4 | K=16 |"
  zs = next(r for r in rows if r.startswith("| zeroshot"))
  cells = [c.strip() for c in zs.strip("|").split("|")]
  assert cells[1] and cells[2:] == ["", "", ""]
  assert "zeroshot (any K)" in text and "K=0" not in text
  zs_rows = [r for r in csv.DictReader(open(out / "summary.csv")) if r["method"] == "zeroshot"]
  assert {r["shots"] for r in zs_rows} == {"any"} and {r["n"] for r in zs_rows} == {"3"}


def test_provenance_of_a_config(tmp_path):
  import ml_collections as mlc
  split = tmp_path / "s.json"
  split.write_text("{}")
  (tmp_path / "ckpt").mkdir()
  (tmp_path / "ckpt" / "manifest.json").write_text('{"a": 1}')
  cfg = mlc.ConfigDict(dict(model=dict(init=str(tmp_path / "ckpt"), preset="biomedclip"),
                            method=dict(name="coop", n_ctx=4)))
  prov = provenance.collect(cfg, split)
  assert prov["backbone"]["manifest_sha256"] == provenance.sha256(tmp_path / "ckpt/manifest.json")
  assert prov["split_file"]["sha256"] == provenance.sha256(split)
  assert prov["method"] == {"name": "coop", "n_ctx": 4} and "jax" in prov["versions"]
  cfg.model.init = ""
  assert provenance.collect(cfg)["backbone"]["label"] == "RANDOM biomedclip"
