"""Per-run result files and the seed-aggregated tables of the BiomedCoOp paper.

Every run writes ``<workdir>/results.json`` (through ``write_run_results``) and a human-readable
``results.md``. ``python -m biomedjax.report <workdirs...> [--out DIR]`` reads any number of them
(a directory without ``results.json`` is searched recursively, so a sweep's parent directory works)
and writes ``report.md``, ``summary.csv`` and ``fewshot_curve.png`` to ``--out``.

results.json schema (extra keys are kept and ignored)::

  {
    "method":  "coop",             # str, names the row/column in the tables
    "dataset": "btmri",            # str
    "shots":   16,                 # int, K
    "seed":    1,                  # int
    "setting": "few_shot",         # "few_shot" | "base2novel"
    "test":    {"accuracy": 0.71, ...},   # required for few_shot
    "base":    {"accuracy": 0.80, ...},   # required for base2novel (test split, base classes)
    "novel":   {"accuracy": 0.66, ...},   # required for base2novel (test split, novel classes)
    "hm":      0.7231,             # base2novel only; added by write_run_results
    "val":     {...}               # optional
  }

The split dicts are ``biomedjax.metrics.classification_report`` outputs: accuracies are fractions
in [0, 1]; tables show them in percent. Only ``accuracy`` is required; ``--metric`` picks another
key (e.g. ``macro_f1``).

Aggregation, and why: runs are grouped by (setting, method, dataset, shots[, split]) over seeds
and shown as ``mean ± std`` (std with ddof=0, as CoOp's ``parse_test_res.py``). A group with fewer
seeds than the report's seed set is marked ``(n=2)``; an average over datasets that lacks a
dataset says ``(3/4 datasets)``, and one that includes groups with missing seeds says
``(1 with n<3)``: an incomplete mean must never pass for a complete one. Two files
for the same run (same group and seed) are an error naming both. Base-to-novel HM is computed
from the mean base and mean novel accuracies, as the papers' tables do.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import pathlib
import sys

import numpy as np

from biomedjax import metrics

SETTINGS = {"few_shot": ("test",), "base2novel": ("base", "novel")}
_FIELDS = {"method": str, "dataset": str, "shots": int, "seed": int, "setting": str}
_MD_METRICS = (("accuracy", "acc %", 100), ("balanced_accuracy", "bal. acc %", 100),
               ("macro_f1", "macro-F1 %", 100), ("nll", "NLL", 1), ("ece", "ECE %", 100))


class ResultsError(ValueError):
  """A results.json that does not follow the schema; the message names the file and the key."""


def validate_results(results: dict, source: str, metric: str = "accuracy") -> None:
  if not isinstance(results, dict):
    raise ResultsError(f"{source}: top level must be a JSON object")
  for key, kind in _FIELDS.items():
    if key not in results:
      raise ResultsError(f"{source}: missing key {key!r}")
    value = results[key]
    if not isinstance(value, kind) or isinstance(value, bool):
      raise ResultsError(f"{source}: key {key!r} must be {kind.__name__}, got {value!r}")
  if results["setting"] not in SETTINGS:
    raise ResultsError(f"{source}: key 'setting' is {results['setting']!r}; "
                       f"expected one of {sorted(SETTINGS)}")
  for split in SETTINGS[results["setting"]]:
    block = results.get(split)
    if not isinstance(block, dict):
      raise ResultsError(f"{source}: missing key {split!r} (a metrics object) for setting "
                         f"{results['setting']!r}")
    value = block.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
      raise ResultsError(f"{source}: key '{split}.{metric}' must be a finite number, got {value!r}")


def _atomic_write(path: pathlib.Path, text: str) -> None:
  """Write-then-rename, so a killed run never leaves a half-written file for the report."""
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def write_run_results(workdir, results: dict) -> pathlib.Path:
  """Validates ``results``, adds ``hm`` for base-to-novel, writes results.json and results.md."""
  workdir = pathlib.Path(workdir)
  path = workdir / "results.json"
  validate_results(results, str(path))
  if results["setting"] == "base2novel":
    results = {**results, "hm": metrics.harmonic_mean(results["base"]["accuracy"],
                                                      results["novel"]["accuracy"])}
  workdir.mkdir(parents=True, exist_ok=True)
  _atomic_write(path, json.dumps(results, indent=2, sort_keys=True) + "\n")
  _atomic_write(workdir / "results.md", run_markdown(results))
  return path


def _md_table(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def run_markdown(results: dict) -> str:
  """One run's metrics per split, as a Markdown table."""
  title = (f"# {results['method']} on {results['dataset']}: {results['shots']}-shot, "
           f"seed {results['seed']} ({results['setting']})\n\n")
  rows = []
  for split in ("val", "test", "base", "novel"):
    block = results.get(split)
    if not isinstance(block, dict):
      continue
    cells = [f"{block[k] * scale:.2f}" if isinstance(block.get(k), (int, float)) else "-"
             for k, _, scale in _MD_METRICS]
    rows.append([split, *cells, str(block.get("num_examples", "-"))])
  table = _md_table(["split", *[name for _, name, _ in _MD_METRICS], "n"], rows)
  if "hm" in results:
    table += f"\nHarmonic mean (base, novel): {results['hm'] * 100:.2f}\n"
  return title + table


def find_results(paths) -> list[pathlib.Path]:
  """results.json files under each path; a path with none is an error (likely a typo)."""
  found = []
  for path in map(pathlib.Path, paths):
    if path.is_file():
      found.append(path)
      continue
    hits = [path / "results.json"] if (path / "results.json").is_file() else sorted(
        path.rglob("results.json"))
    if not hits:
      raise FileNotFoundError(f"{path}: no results.json found in or below it")
    found += hits
  return found


def load_runs(paths, metric: str = "accuracy") -> list[dict]:
  """Loads and validates every results.json; duplicate runs are an error naming both files."""
  runs, seen = [], {}
  for path in find_results(paths):
    try:
      results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise ResultsError(f"{path}: invalid JSON ({e})") from None
    validate_results(results, str(path), metric)
    key = tuple(results[k] for k in ("setting", "method", "dataset", "shots", "seed"))
    if key in seen:
      raise ResultsError(f"{path} and {seen[key]} are the same run {key}")
    seen[key] = path
    runs.append({**results, "_path": str(path)})
  return runs


def group(runs: list[dict], metric: str) -> dict[tuple, dict[int, float]]:
  """(setting, method, dataset, shots, split) -> {seed: metric value in percent}."""
  groups = collections.defaultdict(dict)
  for run in runs:
    for split in SETTINGS[run["setting"]]:
      key = (run["setting"], run["method"], run["dataset"], run["shots"], split)
      groups[key][run["seed"]] = 100.0 * run[split][metric]
  return dict(groups)


def _cell(values: dict[int, float] | None, n_seeds: int) -> str:
  if not values:
    return "-"
  v = np.array(list(values.values()))
  text = f"{v.mean():.2f} ± {v.std():.2f}"
  return text if len(v) == n_seeds else f"{text} (n={len(v)})"


def _mean_over_datasets(groups, setting, method, datasets, shots, split, n_seeds):
  """Mean over datasets of per-dataset means, with what it covers: a cell text."""
  found = [groups[k] for d in datasets if (k := (setting, method, d, shots, split)) in groups]
  if not found:
    return None, "-"
  mean = float(np.mean([np.mean(list(g.values())) for g in found]))
  notes = []
  if len(found) < len(datasets):
    notes.append(f"{len(found)}/{len(datasets)} datasets")
  incomplete = sum(len(g) < n_seeds for g in found)
  if incomplete:
    notes.append(f"{incomplete} with n<{n_seeds}")
  return mean, f"{mean:.2f}" + (f" ({', '.join(notes)})" if notes else "")


def _axes(groups, setting):
  keys = [k for k in groups if k[0] == setting]
  return (sorted({k[1] for k in keys}), sorted({k[2] for k in keys}), sorted({k[3] for k in keys}))


def fewshot_tables(groups, n_seeds: int, metric: str) -> str:
  """(a) methods x K per dataset and averaged; (b) datasets x methods per K."""
  methods, datasets, shots = _axes(groups, "few_shot")
  if not methods:
    return ""
  out = [f"## Few-shot {metric} (%), mean ± std over seeds\n"]
  for d in datasets:
    rows = [[m, *[_cell(groups.get(("few_shot", m, d, k, "test")), n_seeds) for k in shots]]
            for m in methods]
    out.append(f"### {d}\n\n" + _md_table(["method", *[f"K={k}" for k in shots]], rows))
  rows = [[m, *[_mean_over_datasets(groups, "few_shot", m, datasets, k, "test", n_seeds)[1]
                for k in shots]] for m in methods]
  out.append(f"### Average over {len(datasets)} datasets\n\n"
             + _md_table(["method", *[f"K={k}" for k in shots]], rows))
  for k in shots:
    rows = [[d, *[_cell(groups.get(("few_shot", m, d, k, "test")), n_seeds) for m in methods]]
            for d in datasets]
    rows.append(["**Average**", *[_mean_over_datasets(
        groups, "few_shot", m, datasets, k, "test", n_seeds)[1] for m in methods]])
    out.append(f"### K = {k}: datasets × methods\n\n" + _md_table(["dataset", *methods], rows))
  return "\n".join(out)


def base2novel_tables(groups, n_seeds: int, metric: str) -> str:
  """(c) base / novel / HM per dataset and averaged; HM from the mean base and novel values."""
  methods, datasets, shots = _axes(groups, "base2novel")
  out = []
  for k in shots:
    out.append(f"## Base-to-novel {metric} (%), K = {k}, mean ± std over seeds\n")
    for d in [*datasets, None]:
      rows = []
      for m in methods:
        if d is None:
          base, base_text = _mean_over_datasets(groups, "base2novel", m, datasets, k, "base",
                                                n_seeds)
          novel, novel_text = _mean_over_datasets(groups, "base2novel", m, datasets, k, "novel",
                                                  n_seeds)
          cells = [base_text, novel_text]
        else:
          b, n = (groups.get(("base2novel", m, d, k, s)) for s in ("base", "novel"))
          base = np.mean(list(b.values())) if b else None
          novel = np.mean(list(n.values())) if n else None
          cells = [_cell(b, n_seeds), _cell(n, n_seeds)]
        hm = "-" if base is None or novel is None else f"{metrics.harmonic_mean(base, novel):.2f}"
        rows.append([m, *cells, hm])
      title = f"Average over {len(datasets)} datasets" if d is None else d
      out.append(f"### {title}\n\n" + _md_table(["method", "base", "novel", "HM"], rows))
  return "\n".join(out)


def write_csv(groups, path: pathlib.Path) -> None:
  """One row per group: the numbers behind every table cell, seeds included."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["setting", "method", "dataset", "shots", "split", "mean", "std", "n", "seeds"])
    for key in sorted(groups):
      v = np.array(list(groups[key].values()))
      seeds = " ".join(map(str, sorted(groups[key])))
      writer.writerow([*key, f"{v.mean():.4f}", f"{v.std():.4f}", len(v), seeds])


def plot_fewshot_curve(groups, path: pathlib.Path, metric: str, n_seeds: int) -> bool:
  """Mean over datasets vs K, one line per method; open markers flag incomplete means (as the
  Average table's notes do). Returns False when there are no few-shot runs."""
  methods, datasets, shots = _axes(groups, "few_shot")
  if not methods:
    return False
  import matplotlib  # Imported here: only the report CLI needs it, not training.
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
  any_incomplete = False
  for m in methods:
    cells = [(k, *_mean_over_datasets(groups, "few_shot", m, datasets, k, "test", n_seeds))
             for k in shots]
    cells = [(k, v, "(" in text) for k, v, text in cells if v is not None]
    line, = ax.plot([k for k, _, _ in cells], [v for _, v, _ in cells], marker="o", label=m)
    open_points = [(k, v) for k, v, incomplete in cells if incomplete]
    if open_points:
      any_incomplete = True
      ax.plot(*zip(*open_points), linestyle="none", marker="o", markersize=8,
              markerfacecolor="white", markeredgecolor=line.get_color())
  ax.set_xscale("log", base=2)
  ax.set_xticks(shots, [str(k) for k in shots])
  ax.set_xlabel("shots per class (K)")
  ax.set_ylabel(f"{metric} (%), mean over {len(datasets)} datasets")
  ax.set_title("Few-shot " + metric + (" (open markers: missing datasets or seeds)"
                                       if any_incomplete else ""), fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
  return True


def make_report(paths, out_dir, metric: str = "accuracy") -> str:
  """Loads runs, writes report.md, summary.csv and fewshot_curve.png; returns the Markdown."""
  runs = load_runs(paths, metric)
  groups = group(runs, metric)
  seeds = sorted({r["seed"] for r in runs})
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  header = (f"# Results: {len(runs)} runs, seeds {seeds}\n\n"
            f"Cells marked (n=k) have fewer than {len(seeds)} seeds.\n\n")
  text = header + "\n".join(t for t in (fewshot_tables(groups, len(seeds), metric),
                                        base2novel_tables(groups, len(seeds), metric)) if t)
  _atomic_write(out_dir / "report.md", text)
  write_csv(groups, out_dir / "summary.csv")
  plot_fewshot_curve(groups, out_dir / "fewshot_curve.png", metric, len(seeds))
  return text


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m biomedjax.report", description=__doc__.split(
      "\n")[0])
  parser.add_argument("workdirs", nargs="+", help="run workdirs or directories above them")
  parser.add_argument("--out", default="report", help="output directory (default: ./report)")
  parser.add_argument("--metric", default="accuracy", help="key of the split metrics to tabulate")
  args = parser.parse_args(argv)
  try:
    print(make_report(args.workdirs, args.out, args.metric))
  except (ResultsError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def cli() -> None:
  """Console script ``biomedjax-report``."""
  sys.exit(main())


if __name__ == "__main__":
  cli()
