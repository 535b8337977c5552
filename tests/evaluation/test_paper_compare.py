"""The report against a published table, from results.json files with known accuracies: the
expected numbers below are hand computations from those accuracies and the published CSVs."""

import collections
import json

import pytest

from biomedjax import published, report
from biomedjax.published import compare

SPLIT_SHA = published.SPLIT_SHA256
OTHER_SHA = "ab" * 32
ELEVEN = published.BIOMEDCOOP_DATASETS
SPLIT_NAMES = {"btmri": "BTMRI", "busi": "BUSI", "chmnist": "CHMNIST", "covid_19": "COVID_19",
               "ctkidney": "CTKidney", "dermamnist": "DermaMNIST", "kneexray": "KneeXray",
               "kvasir": "Kvasir", "lungcolon": "LungColon", "octmnist": "OCTMNIST",
               "retina": "RETINA"}


def _write(root, method, dataset, seed, acc=None, shots=16, setting="few_shot", random=False,
           sha=None, base=None, novel=None, **extra):
  name = SPLIT_NAMES[dataset]
  split_name = f"split_{name}.json"
  results = {"method": method, "dataset": dataset, "shots": shots, "seed": seed,
             "setting": setting, **extra,
             "provenance": {
                 "backbone": ({"kind": "random", "label": "RANDOM clip_vit_b16"} if random else
                              {"kind": "converted", "label": "clip_b16 (0123456789ab)",
                               "manifest_sha256": "0123456789ab" * 5}),
                 "split_file": {"path": f"/data/{name}/{split_name}",
                                "sha256": sha or SPLIT_SHA.get(split_name, "cd" * 32)}}}
  if setting == "few_shot":
    results["test"] = {"accuracy": acc}
  else:
    results["base"], results["novel"] = {"accuracy": base}, {"accuracy": novel}
  d = root / f"{method}_{dataset}_{shots}_{seed}_{setting}_{extra.get('variant', '')}"
  d.mkdir(parents=True)
  (d / "results.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def biomedvr_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("vr")
  # BioMedVR BUSI, two seeds on random weights and a split that is not the published one
  _write(root, "biomedvr", "busi", 1, 0.80, random=True, sha=OTHER_SHA,
         selection={"headline": "best_test"})
  _write(root, "biomedvr", "busi", 2, 0.84, random=True, sha=OTHER_SHA,
         selection={"headline": "best_test"})
  _write(root, "coop", "btmri", 1, 0.70)  # CoOp BTMRI, one seed
  # AR: every dataset at exactly its published accuracy, seed 1
  for row in published.load("biomedvr_16shot"):
    if row["method"] == "AR" and row["key"] != "average":
      _write(root, "ar", row["key"], 1, float(row["accuracy"]) / 100)
  out = tmp_path_factory.mktemp("vr_out")
  text = compare.compare([root], "biomedvr_16shot", out)
  return text, out


def _row(text, label):
  rows = [line for line in text.splitlines() if f"| {label} |" in line]
  assert len(rows) == 1, (label, rows)
  return [c.strip() for c in rows[0].strip("|").split("|")]


def test_cells_deltas_and_provenance(biomedvr_runs):
  text, _ = biomedvr_runs
  # (80 + 84) / 2 = 82.00, population std 2.00; published 82.6 -> Δ = -0.60
  weights, _, ours, pub, delta, prov = _row(text, "BioMedVR BUSI")
  assert (weights, ours, pub, delta) == ("RANDOM", "82.00 ± 2.00 (2)", "82.6", "-0.60")
  assert f"SPLIT DIFFERS split_BUSI.json {OTHER_SHA[:12]}" in prov
  assert "RANDOM clip_vit_b16" in prov
  weights, _, ours, pub, delta, prov = _row(text, "CoOp BTMRI")
  assert (weights, ours, pub, delta) == ("", "70.00 ± 0.00 (1)", "79.2", "-9.20")
  assert "SPLIT DIFFERS" not in prov and "clip_b16 (0123456789ab)" in prov
  assert _row(text, "AR BTMRI")[2:5] == ["73.50 ± 0.00 (1)", "73.5", "+0.00"]


def test_averages_as_the_source_computed_them_both_when_they_disagree(biomedvr_runs):
  text, _ = biomedvr_runs
  ar = [75.4, 39.6, 79.2, 94.3, 72.5, 73.5, 83.9, 76.3, 72.5, 59.6, 73.5]  # the CSV's AR row
  mean = sum(ar) / 11  # 72.7545...
  printed = _row(text, "AR Avg. (printed)")
  assert printed[2:5] == [f"{mean:.2f} ± 0.00 (1)", "72.6", f"{mean - 72.6:+.2f}"]
  rows = _row(text, "AR Avg. (mean of the published rows; the printed Avg. differs)")
  assert rows[3] == f"{mean:.6g}" and rows[4] == "+0.00"
  # BioMedVR's printed average equals its rows: one row; an incomplete average is not compared
  assert "BioMedVR Avg. (mean of" not in text
  assert _row(text, "BioMedVR Avg. (printed)")[2:5] == [
      "82.00 ± 2.00 (2) [1/11 datasets]", "76.4", "-"]


def test_summary_counts_cells_within_one_std(biomedvr_runs):
  text, _ = biomedvr_runs
  # compared: BioMedVR BUSI (|-0.60| <= 2.00: in), CoOp BTMRI (9.20 > 0: out), 11 AR datasets
  # (Δ = 0: in), AR printed Avg. (0.15 > 0 + 0.05: out), AR mean-of-rows Avg. (in):
  # 1 + 1 + 11 + 1 + 1 = 15 compared, 1 + 11 + 1 = 13 within
  assert "13 of 15 cells within 1 std of the published value; largest |Δ|: CoOp BTMRI (-9.20)" \
      in text


def test_scatter_is_drawn(biomedvr_runs):
  _, out = biomedvr_runs
  png = out / "paper_biomedvr_16shot_scatter.png"
  assert png.stat().st_size > 5000
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  csv_text = (out / "paper_biomedvr_16shot.csv").read_text()
  assert "BioMedVR BUSI,82.0000,2.0000,2,82.6,-0.6000,True" in csv_text


def test_fewshot_average_and_base2novel_hm_definitions(tmp_path):
  for d in ELEVEN:  # CoOp K=16: seed 1 at 60 %, seed 2 at 70 % on every dataset
    _write(tmp_path / "fs", "coop", d, 1, 0.60)
    _write(tmp_path / "fs", "coop", d, 2, 0.70)
  text = compare.compare([tmp_path / "fs"], "biomedcoop_fewshot", tmp_path / "o1")
  # per seed the mean over 11 datasets: 60, 70 -> 65.00 ± 5.00 (2); published 69.62
  assert _row(text, "CoOp K=16")[2:5] == ["65.00 ± 5.00 (2)", "69.62", "-4.62"]
  assert _row(text, "CoOp K=8")[2:5] == ["-", "65.84", "-"]
  assert "1 of 1 cells within 1 std" in text
  for i, d in enumerate(published.BIOMEDCOOP_BASE2NOVEL_DATASETS):
    b, n = (0.80, 0.60) if i % 2 else (0.60, 0.40)
    _write(tmp_path / "b2n", "coop", d, 1, setting="base2novel", base=b, novel=n)
  text = compare.compare([tmp_path / "b2n"], "biomedcoop_base2novel", tmp_path / "o2")
  assert _row(text, "CoOp base")[2:5] == ["70.00 ± 0.00 (1)", "73.85", "-3.85"]
  # CoOp's published HM (67.23) fits a mean of per-dataset HMs:
  # (HM(80, 60) + HM(60, 40)) / 2 = (68.5714 + 48.0) / 2 = 58.2857; HM of the means 70/50: 58.3333
  row = _row(text, "CoOp HM (mean of hms, the published definition)")
  assert row[2:5] == ["58.29 ± 0.00 (1)", "67.23", "-8.94"]
  other = _row(text, "CoOp HM (hm of means, other definition)")
  assert other[2].startswith("58.33 ± 0.00 (1)") and other[4] == "-"


def test_unknown_table_is_one_line(tmp_path):
  _write(tmp_path, "coop", "btmri", 1, 0.5)
  assert report.main([str(tmp_path), "--out", str(tmp_path / "o"), "--published", "nope"]) == 1


def test_runs_of_a_recipe_are_compared_without_being_told(tmp_path):
  from configs.paper import biomedcoop_fewshot
  config = biomedcoop_fewshot.get_config("method=coop,dataset=btmri,shots=16,seed=1")
  assert config.paper_table == "biomedcoop_fewshot"
  for seed, acc in ((1, 0.5), (2, 0.6)):
    _write(tmp_path / "runs", "coop", "btmri", seed, acc)
  for d in (tmp_path / "runs").iterdir():
    (d / "config.json").write_text(config.to_json())
  assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "o")]) == 0
  assert (tmp_path / "o" / "paper_biomedcoop_fewshot.md").is_file()
  assert compare.detect([tmp_path / "runs"]) == "biomedcoop_fewshot"
  (next((tmp_path / "runs").iterdir()) / "config.json").write_text("{}")  # one run of no recipe
  assert compare.detect([tmp_path / "runs"]) is None


def test_carried_facts_agree_with_the_published_data(shared_dir):
  """The package's copies and the facts it states about them, checked against the sources."""
  import hashlib
  for name, table in published.TABLES.items():
    assert (published.HERE / table.file).read_bytes() == (
        shared_dir / "data" / "published" / table.file).read_bytes(), name
  for name, digest in published.SPLIT_SHA256.items():
    path = shared_dir / "data" / "biomedcoop" / "splits" / name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, name
  rows = collections.defaultdict(dict)
  for r in published.load("biomedvr_16shot"):
    rows[r["method"]][r["key"]] = float(r["accuracy"])
  differs = {m for m, v in rows.items()
             if abs(round(sum(x for k, x in v.items() if k != "average") / 11, 1) - v["average"])
             > 0.05 + 1e-9}
  assert differs == set(published.PRINTED_AVERAGE_DIFFERS["biomedvr_16shot"])
  for r in published.load("biomedcoop_base2novel"):
    b, n, hm = float(r["base"]), float(r["novel"]), float(r["hm"])
    equal = abs(round(2 * b * n / (b + n), 2) - hm) < 0.005 + 1e-9
    assert equal == (published.BASE2NOVEL_HM.get(r["method"]) == "hm_of_means"), r["method"]


# --- the IU-Xray study (Tables 1-3) --------------------------------------------------------------

IUXRAY_METHODS = {"zs": "zeroshot", "ft": "finetune", "lp": "head_probe"}


def _iuxray_numbers(setting, shift=0.0, f1_shift=0.0, cardiomegaly_shift=0.0):
  """A ``multilabel_study`` record holding the published numbers of ``setting`` (+ shifts)."""
  t1 = next(r for r in published.load("iuxray_table1") if r["setting"] == setting)
  v = lambda x: float(x) + shift  # noqa: E731
  per_label = {r["disease"]: v(r[setting]) for r in published.load("iuxray_table2")}
  per_label["Cardiomegaly"] += cardiomegaly_shift
  return {"name": setting, "kind": "zeroshot" if setting == "zs" else "head",
          "minutes": float(t1["time_min"]) if t1["time_min"] else None,
          "rule_a": "rowminmax@0.5", "rule_b": "logit>0",
          "table1": {"macro_f1": v(t1["f1"]) + f1_shift, "exact_match": v(t1["exact_match"]),
                     "lrap": v(t1["lrap"]), "coverage_error": v(t1["coverage_error"]),
                     "ranking_loss": 0.1},
          "separability": {"inter": v(t1["inter_class_dist"]),
                           "intra": v(t1["intra_class_dist"]), "ratio": v(t1["ratio"])},
          "per_label_f1": per_label,
          "per_domain_f1": {r["domain"]: v(r[setting]) for r in published.load("iuxray_table3")}}


def _write_iuxray(root, setting, seed, study):
  d = root / f"{setting}_{seed}"
  d.mkdir(parents=True)
  results = {"method": IUXRAY_METHODS[setting], "dataset": "iuxray", "shots": 0, "seed": seed,
             "setting": "few_shot", "task_kind": "multilabel",
             "test": {"macro_f1": study["table1"]["macro_f1"]},
             "provenance": {"backbone": {"kind": "converted", "label": "biomedclip (0123456789ab)",
                                         "manifest_sha256": "0123456789ab" * 5}}}
  if study is not None:
    results["multilabel_study"] = study
  (d / "results.json").write_text(json.dumps(results))
  (d / "config.json").write_text(json.dumps({"paper_table": "iuxray_table1"}))
  return d


@pytest.fixture(scope="module")
def iuxray_report(tmp_path_factory):
  """zs at the published numbers; ft at them but macro-F1 +0.010 and Cardiomegaly F1 +0.020;
  lp two seeds at published -0.010 and +0.010 everywhere (mean = published, std 0.010); the
  report finds the recipe's table and compares all three tables."""
  root, out = tmp_path_factory.mktemp("iuxray"), tmp_path_factory.mktemp("iuxray_out")
  _write_iuxray(root, "zs", 1, _iuxray_numbers("zs"))
  _write_iuxray(root, "ft", 1, _iuxray_numbers("ft", f1_shift=0.010, cardiomegaly_shift=0.020))
  _write_iuxray(root, "lp", 1, _iuxray_numbers("lp", shift=-0.010))
  _write_iuxray(root, "lp", 2, _iuxray_numbers("lp", shift=0.010))
  assert report.main([str(root), "--out", str(out)]) == 0
  return {t: (out / f"paper_{t}.md").read_text() for t in compare.SAME_RUNS["iuxray_table1"]}, out


def test_iuxray_table1_cells(iuxray_report):
  text = iuxray_report[0]["iuxray_table1"]
  assert _row(text, "zs macro-F1 (rowminmax@0.5)")[2:5] == ["0.105 ± 0.000 (1)", "0.105", "+0.000"]
  assert _row(text, "ft macro-F1 (rowminmax@0.5)")[2:5] == ["0.245 ± 0.000 (1)", "0.235", "+0.010"]
  assert _row(text, "ft inter-class distance")[2:5] == ["22.754 ± 0.000 (1)", "22.754", "+0.000"]
  assert _row(text, "zs inter-class distance")[3] == "31.890"  # as printed
  assert _row(text, "lp coverage error")[2:5] == ["3.077 ± 0.010 (2)", "3.077", "+0.000"]
  # training time: shown, never compared; zero-shot has none in the paper
  assert _row(text, "ft training time (min)")[2:5] == [
      "15.470 ± 0.000 (1) [not compared: wall time depends on the machine]", "15.47", "-"]
  assert "zs training time" not in text
  # compared: zs 7 + ft 7 + lp 7 = 21; all within but ft's F1 (0.010 > 0 + 0.0005)
  assert ("20 of 21 cells within 1 std of the published value; largest |Δ|: ft macro-F1 "
          "(rowminmax@0.5) (+0.010)") in text


def test_iuxray_tables_2_and_3_cells(iuxray_report):
  texts, out = iuxray_report
  t2, t3 = texts["iuxray_table2"], texts["iuxray_table3"]
  assert _row(t2, "ft Cardiomegaly F1")[2:5] == ["0.510 ± 0.000 (1)", "0.490", "+0.020"]
  assert _row(t2, "zs No Finding F1")[2:5] == ["0.749 ± 0.000 (1)", "0.749", "+0.000"]
  assert _row(t2, "lp Atelectasis F1")[2:5] == ["0.410 ± 0.010 (2)", "0.410", "+0.000"]
  assert "41 of 42 cells within 1 std" in t2 and "largest |Δ|: ft Cardiomegaly F1" in t2
  assert _row(t3, "ft Pulmonary F1")[2:5] == ["0.387 ± 0.000 (1)", "0.387", "+0.000"]
  assert "12 of 12 cells within 1 std" in t3
  for t in compare.SAME_RUNS["iuxray_table1"]:
    assert (out / f"paper_{t}_scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # the report itself: macro-F1 (every run is multilabel), K = 0 named as what it is, no K curve
  report_md = (out / "report.md").read_text()
  assert "## Few-shot macro_f1 (%)" in report_md
  assert "| method | any K | all training images (K=0) |" in report_md
  assert not list(out.glob("fewshot_curve_*.png"))


def test_iuxray_numbers_of_an_older_run_come_from_its_setting_file(tmp_path):
  import numpy as np
  from biomedjax.studies import multilabel_study
  rng = np.random.default_rng(0)
  targets = (rng.random((12, 3)) > 0.5).astype(np.float32)
  multilabel_study.save_setting(tmp_path / multilabel_study.SETTING_FILE, "lp", "head",
                                rng.normal(size=(12, 3)), targets, ["a", "b", "c"])
  run = {"dataset": "iuxray", "_path": str(tmp_path / "results.json")}
  assert compare.iuxray_study(run) == multilabel_study.record(tmp_path)
  assert compare.iuxray_study({**run, "multilabel_study": {"name": "x"}}) == {"name": "x"}
