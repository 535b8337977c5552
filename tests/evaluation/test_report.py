"""biomedjax.evaluation.report on synthetic run workdirs, numbers checked by hand computation."""

import csv
import json

import numpy as np
import pytest

from biomedjax.evaluation import report

pytest.importorskip("matplotlib")


def _acc(method, dataset, shots, seed):
  """A deterministic, distinct accuracy per run (fraction)."""
  return round(0.3 + 0.1 * (method == "coop") + 0.02 * shots + 0.01 * seed
               + 0.05 * (dataset == "busi"), 6)


def _write_fewshot_runs(root):
  """coop and lp on btmri and busi, K in {1, 4}, seeds 1-3; lp/busi/K=4 lacks seed 3 and lp has
  no btmri K=1 run at all."""
  for method in ("coop", "lp"):
    for dataset in ("btmri", "busi"):
      for shots in (1, 4):
        for seed in (1, 2, 3):
          if method == "lp" and ((dataset, shots, seed) == ("busi", 4, 3)
                                 or (dataset, shots) == ("btmri", 1)):
            continue
          acc = _acc(method, dataset, shots, seed)
          report.write_run_results(
              root / f"{method}_{dataset}_{shots}_{seed}",
              dict(method=method, dataset=dataset, shots=shots, seed=seed, setting="few_shot",
                   test=dict(accuracy=acc, macro_f1=acc - 0.1, num_examples=100)))


def _fmt(values):
  v = np.array(values) * 100
  return f"{v.mean():.2f} ± {v.std():.2f}"


def test_fewshot_tables_csv_and_plot(tmp_path):
  _write_fewshot_runs(tmp_path / "runs")
  text = report.make_report([tmp_path / "runs"], tmp_path / "out")

  complete = [_acc("coop", "busi", 4, s) for s in (1, 2, 3)]
  k1 = [_acc("coop", "busi", 1, s) for s in (1, 2, 3)]
  assert f"| coop | {_fmt(k1)} | {_fmt(complete)} |" in text
  partial = [_acc("lp", "busi", 4, s) for s in (1, 2)]
  assert f"{_fmt(partial)} (n=2)" in text

  # Average over datasets at K=1: lp has busi only -> flagged as 1/2 datasets.
  lp_k1 = np.mean([_acc("lp", "busi", 1, s) for s in (1, 2, 3)]) * 100
  assert f"{lp_k1:.2f} (1/2 datasets)" in text
  coop_k4 = np.mean([np.mean([_acc("coop", d, 4, s) for s in (1, 2, 3)])
                     for d in ("btmri", "busi")]) * 100
  assert f"| coop | 46.50 | {coop_k4:.2f} |" in text
  lp_k4 = np.mean([np.mean([_acc("lp", "btmri", 4, s) for s in (1, 2, 3)]), np.mean(partial)])
  assert f"| lp | {lp_k1:.2f} (1/2 datasets) | {lp_k4 * 100:.2f} (1 with n<3) |" in text

  with open(tmp_path / "out" / "summary.csv") as f:
    rows = {(r["method"], r["dataset"], r["shots"]): r for r in csv.DictReader(f)}
  row = rows[("lp", "busi", "4")]
  assert row["n"] == "2" and row["seeds"] == "1 2"
  assert float(row["ci95"]) == pytest.approx(1.96 * float(row["std"]) / np.sqrt(2), abs=1e-3)
  assert float(row["mean"]) == pytest.approx(np.mean(partial) * 100, abs=1e-4)
  assert float(row["std"]) == pytest.approx(np.std(partial) * 100, abs=1e-4)

  png, = [p.read_bytes() for p in (tmp_path / "out").glob("fewshot_curve_*.png")]
  assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_other_metric(tmp_path):
  _write_fewshot_runs(tmp_path)
  text = report.make_report([tmp_path], tmp_path / "out", metric="macro_f1")
  vals = [_acc("coop", "btmri", 1, s) - 0.1 for s in (1, 2, 3)]
  assert _fmt(vals) in text


def test_base2novel_table(tmp_path):
  base = {1: 0.80, 2: 0.76}
  novel = {1: 0.60, 2: 0.70}
  for seed in (1, 2):
    report.write_run_results(tmp_path / f"r{seed}", dict(
        method="biomedcoop", dataset="btmri", shots=16, seed=seed, setting="base2novel",
        base=dict(accuracy=base[seed]), novel=dict(accuracy=novel[seed])))
  run = json.loads((tmp_path / "r1" / "results.json").read_text())
  assert run["hm"] == pytest.approx(2 * 0.8 * 0.6 / 1.4)
  assert "Harmonic mean" in (tmp_path / "r1" / "results.md").read_text()
  text = report.make_report([tmp_path], tmp_path / "out")
  b, n = np.mean([80, 76]), np.mean([60, 70])
  hm = 2 * b * n / (b + n)
  assert f"| biomedcoop | {_fmt([0.80, 0.76])} | {_fmt([0.60, 0.70])} | {hm:.2f} |" in text
  assert not list((tmp_path / "out").glob("fewshot_curve*.png"))


def _good():
  return dict(method="coop", dataset="btmri", shots=1, seed=1, setting="few_shot",
              test=dict(accuracy=0.5))


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r.pop("seed"), "missing key 'seed'"),
    (lambda r: r.update(shots="16"), "key 'shots' must be int"),
    (lambda r: r.update(setting="fewshot"), "key 'setting' is 'fewshot'"),
    (lambda r: r.pop("test"), "missing key 'test'"),
    (lambda r: r.update(test=dict(acc=0.5)), "key 'test.accuracy'"),
])
def test_malformed_results_name_file_and_key(tmp_path, mutate, message):
  results = _good()
  mutate(results)
  path = tmp_path / "run" / "results.json"
  path.parent.mkdir()
  path.write_text(json.dumps(results))
  with pytest.raises(report.ResultsError, match=message) as info:
    report.load_runs([tmp_path])
  assert str(path) in str(info.value)
  with pytest.raises(report.ResultsError, match=message):
    report.write_run_results(tmp_path / "other", results)


def test_invalid_json_and_duplicates(tmp_path):
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "results.json").write_text("{not json")
  with pytest.raises(report.ResultsError, match=r"a/results.json: invalid JSON"):
    report.load_runs([tmp_path / "a"])
  report.write_run_results(tmp_path / "b", _good())
  report.write_run_results(tmp_path / "c", _good())
  with pytest.raises(report.ResultsError, match="same run"):
    report.load_runs([tmp_path / "b", tmp_path / "c"])
  with pytest.raises(FileNotFoundError, match="nothing_here"):
    report.load_runs([tmp_path / "nothing_here"])


def test_write_is_atomic_and_cli(tmp_path, capsys):
  report.write_run_results(tmp_path / "run", _good())
  assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["results.json", "results.md"]
  assert report.main([str(tmp_path / "run"), "--out", str(tmp_path / "out")]) == 0
  assert "## Few-shot accuracy" in capsys.readouterr().out
  assert report.main([str(tmp_path / "missing")]) == 1


def test_harness_groups_show_the_reference_ci(tmp_path):
  """Adapter-harness runs: 1.96·std/√3 (population std, as BiomedCoOp main.py writes its "std")
  beside the mean; other methods keep mean ± std only."""
  accs = (0.70, 0.75, 0.81)
  for seed, acc in enumerate(accs, 1):
    for method, extra in (("tip_adapter", {}), ("coop", {}), ("lp", {"harness": True})):
      report.write_run_results(
          tmp_path / f"{method}_{seed}",
          dict(method=method, dataset="btmri", shots=4, seed=seed, setting="few_shot",
               test=dict(accuracy=acc), **extra), plots=False)
  text = report.make_report([tmp_path], tmp_path / "out")
  v = np.array(accs) * 100
  # by hand: mean 75.333, population std sqrt(60.667 / 3) = 4.4969, 1.96 * 4.4969 / sqrt(3)
  assert 1.96 * v.std() / np.sqrt(3) == pytest.approx(5.0888, abs=1e-4)
  assert v.std() == pytest.approx(4.4969, abs=1e-4)
  cell = "75.33 ± 4.50 (CI ±5.09)"
  assert f"| tip_adapter | {cell} |" in text      # by method name (no "harness" key)
  assert f"| lp | {cell} |" in text               # by the run's "harness" key
  assert "| coop | 75.33 ± 4.50 |" in text        # not a harness method
  with open(tmp_path / "out" / "summary.csv") as f:
    rows = {r["method"]: r for r in csv.DictReader(f)}
  assert float(rows["tip_adapter"]["ci95"]) == pytest.approx(5.0888, abs=1e-4)


def _run(seed=1, epochs=100, batch=32, **extra):
  return dict(method="coop", dataset="knee", shots=4, seed=seed, setting="few_shot",
              test=dict(accuracy=0.5 + epochs / 1000), **extra,
              config={"seed": seed, "method.attr_seed": seed, "optim.epochs": epochs,
                      "data.batch_size": batch, "data.shots": 4, "train.progress": True})


def test_runs_that_differ_in_config_are_variant_rows_not_duplicates(tmp_path):
  """A smoke run and a full run of the same method/data/K/seed: two labelled rows; only the
  same config and seed twice is an error."""
  report.write_run_results(tmp_path / "smoke", _run(epochs=2), plots=False)
  report.write_run_results(tmp_path / "full", _run(epochs=100), plots=False)
  report.write_run_results(tmp_path / "full2", _run(seed=2, epochs=100), plots=False)
  text = report.make_report([tmp_path], tmp_path / "out")
  assert "| coop [epochs=2] | 50.20 ± 0.00 (n=1) |" in text
  assert "| coop [epochs=100] | 60.00 ± 0.00 |" in text
  report.write_run_results(tmp_path / "again", _run(epochs=2, **{"train_loss": []}),
                           plots=False)
  with pytest.raises(report.ResultsError, match="same config and seed"):
    report.load_runs([tmp_path])


def test_labels_and_counts_read_right(tmp_path):
  """No doubled [best test epoch], no "fewer than 1 seeds", "(1 run)"; short-K cells marked."""
  report.write_run_results(tmp_path / "vr", dict(
      method="biomedvr", dataset="knee", shots=4, seed=1, setting="few_shot",
      test=dict(accuracy=0.5), selection={"headline": "best_test", "best_epochs_considered": "1-1",
                                              "best_epoch": 1, "best_test_accuracy": 0.5,
                                              "last_epoch": 2},
      effective_shots={"normal": 4, "severe": 3}), plots=False)
  text = report.make_report([tmp_path], tmp_path / "out")
  assert "| biomedvr [best test epoch] | 50.00 ± 0.00 (K short) |" in text
  assert "[best test epoch] [best test epoch]" not in text
  assert "fewer than 1 seeds" not in text and "(1 runs)" not in text
  assert "# Results: 1 run, seeds [1]" in text and "(1 run)" in text
