"""Per-run result files and the seed-aggregated tables of the BiomedCoOp paper.

Every run writes ``<workdir>/results.json`` (through ``write_run_results``) and a human-readable
``results.md``. ``python -m biomedjax.report <workdirs...> [--out DIR]`` reads any number of
them (a directory without ``results.json`` is searched recursively, so a sweep's parent directory
works) and writes ``report.md``, ``summary.csv`` and ``fewshot_curve_<backbone>.png`` to
``--out``. Each run also gets ``confusion_matrix_<split>.png`` and ``per_class_f1_<split>.png``
beside its results.

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
    "val":     {...},              # optional
    "selection": {"headline": "best_test" | "last", ...}  # optional: which state the numbers
  }                                # are of (biomedjax/train/test_selection.py); best_test runs
                                   # get their own table rows, "<method> [best test epoch]"

The split dicts are ``biomedjax.evaluation.metrics.classification_report`` outputs: accuracies are
fractions in [0, 1]; tables show them in percent. Only ``accuracy`` is required; ``--metric`` picks another
key (e.g. ``macro_f1``).

Aggregation, and why: runs are grouped by (setting, method, dataset, shots[, split]) over seeds
and shown as ``mean ± std`` (std with ddof=0, as CoOp's ``parse_test_res.py``); summary.csv
also has ``ci95`` = 1.96·std/√n, the interval the adapter harness reports for its 3 runs, and the
few-shot tables show it beside the mean for runs of that harness (``is_harness``):
``mean ± std (CI ±ci95)``. A group with fewer seeds than the report's seed set is marked
``(n=2)``; an average over datasets that lacks a dataset says ``(3/4 datasets)``, and one that includes groups with missing seeds says
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

from biomedjax.data import tfds_source
from biomedjax.evaluation import metrics, report_cost

SETTINGS = {"few_shot": ("test",), "base2novel": ("base", "novel")}
_FIELDS = {"method": str, "dataset": str, "shots": int, "seed": int, "setting": str}
_MD_METRICS = (("accuracy", "acc %", 100), ("balanced_accuracy", "bal. acc %", 100),
               ("macro_f1", "macro-F1 %", 100), ("nll", "NLL", 1), ("ece", "ECE % (15 bins)", 100))
# Multilabel runs (results["task_kind"] == "multilabel") report ranking metrics instead.
_MD_MULTILABEL = (("macro_f1", "macro-F1 %", 100), ("exact_match", "exact match %", 100),
                  ("lrap", "LRAP", 1), ("coverage_error", "coverage", 1),
                  ("ranking_loss", "ranking loss", 1), ("macro_auroc", "macro AUROC", 1))


def method_label(results: dict) -> str:
  """The method's row/column name: ``biomedcoop``; with the hyperparameters of a grid point
  (``results["variant"]``, from ``config.variant``) ``biomedcoop [method.w=1.0]``; and with
  `` [best test epoch]`` when the run reported its best test epoch (eval.select="best_test",
  the VR references' test-set selection), so such numbers never share a cell with last-epoch
  ones. A run loaded by ``load_runs`` carries its label already (``_label``)."""
  if "_label" in results:
    return results["_label"]
  label = results["method"]
  if results.get("variant"):
    label += f" [{results['variant']}]"
  sel = results.get("selection")
  if isinstance(sel, dict) and sel.get("headline") == "best_test":
    label += " [best test epoch]"
  return label


def headline_metric(results: dict) -> str:
  """The number a run is summarised by: accuracy, or macro-F1 for a multilabel task."""
  return "macro_f1" if results.get("task_kind") == "multilabel" else "accuracy"


ANY_K = -1  # the shots value of their groups (methods whose result does not depend on K)


def declared(method: str | None, key: str) -> bool:
  """A registered method's declaration (``biomedjax.methods.base.Method``), False if unknown."""
  from biomedjax.methods import METHODS
  return bool(getattr(METHODS.get(method), key, False))


def is_k_independent(results: dict) -> bool:
  """No training image is used (``Method.k_independent``): one "any K" column."""
  if "k_independent" in results:
    return bool(results["k_independent"])
  return declared(results.get("method"), "k_independent")


def is_harness(results: dict) -> bool:
  """A run of the adapter harness (``data.augment="harness"``), whose reference reports
  1.96·std/√3 over its three runs (population std) as "std"; results.json files that predate
  the "harness" key: the method's ``harness_protocol`` declaration."""
  if "harness" in results:
    return bool(results["harness"])
  return declared(results.get("method"), "harness_protocol")


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


def write_run_results(workdir, results: dict, plots: bool = True) -> pathlib.Path:
  """Validates ``results``, adds ``hm`` for base-to-novel, writes results.json and results.md
  (and, with ``plots``, the run's confusion-matrix and per-class-F1 pictures)."""
  workdir = pathlib.Path(workdir)
  path = workdir / "results.json"
  validate_results(results, str(path), headline_metric(results))
  if results["setting"] == "base2novel":
    results = {**results, "hm": metrics.harmonic_mean(results["base"]["accuracy"],
                                                      results["novel"]["accuracy"])}
  workdir.mkdir(parents=True, exist_ok=True)
  try:
    if plots:
      write_run_plots(workdir, results)
  except ImportError:  # matplotlib is a dependency, but a run must not fail for a picture
    pass
  _atomic_write(workdir / "results.md", run_markdown(results))
  # Last: a results.json marks a finished run (a rerun of it is a no-op).
  _atomic_write(path, json.dumps(results, indent=2, sort_keys=True) + "\n")
  return path


def _md_table(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def _per_class_md(split: str, block: dict) -> str:
  """Per-class precision/recall/F1/support and the confusion matrix (rows: true class)."""
  names = block.get("classnames") or list(block.get("per_class", {}))
  out = ""
  if isinstance(block.get("per_class"), dict):
    rows = [[n, *(f"{100 * block['per_class'][n][k]:.2f}" for k in ("precision", "recall", "f1")),
             str(block["per_class"][n].get("support", "-"))] for n in names]
    out += f"\n### {split}: per class\n\n" + _md_table(
        ["class", "precision %", "recall %", "F1 %", "support"], rows)
  cm = block.get("confusion_matrix")
  if cm and len(cm) == len(names):
    rows = [[f"**{n}**", *map(str, row)] for n, row in zip(names, cm)]
    out += (f"\n### {split}: confusion matrix (rows: true class, columns: predicted)\n\n"
            + _md_table(["true \\ predicted", *names], rows))
  return out


def run_markdown(results: dict) -> str:
  """One run: metrics per split, per-class P/R/F1 and confusion matrices, calibration,
  provenance."""
  from biomedjax.tools import provenance
  from biomedjax import run_facts
  title = (f"# {results['method']} on {results['dataset']}: "
           f"{_shots_text(results)}{run_facts.short_k_text(results)}, seed {results['seed']} "
           f"({results['setting']})\n\n")
  title += facts_markdown(results)
  if provenance.is_random(results):
    title += (f"> **RANDOM weights ({provenance.backbone_label(results)})**: these numbers "
              "measure the machinery, not medical performance.\n\n")
  columns = _MD_MULTILABEL if results.get("task_kind") == "multilabel" else _MD_METRICS
  rows = []
  for split in ("val", "test", "base", "novel"):
    block = results.get(split)
    if not isinstance(block, dict):
      continue
    cells = [f"{block[k] * scale:.2f}" if isinstance(block.get(k), (int, float)) else "-"
             for k, _, scale in columns]
    rows.append([split, *cells, str(block.get("num_examples", "-"))])
  table = _md_table(["split", *[name for _, name, _ in columns], "n"], rows)
  if "hm" in results:
    table += f"\nHarmonic mean (base, novel): {results['hm'] * 100:.2f}\n"
  table += selection_markdown(results)
  for split in ("test", "base", "novel"):
    if isinstance(results.get(split), dict):
      table += _per_class_md(split, results[split])
  if results.get("skipped_images"):
    table += (f"\n{len(results['skipped_images'])} unreadable image(s) skipped "
              "(listed in results.json under skipped_images).\n")
  prov = provenance.markdown(results.get("provenance"))
  return title + table + _calibration_markdown(results) + ("\n" + prov if prov else "")


def facts_markdown(results: dict) -> str:
  """Data, per-dataset settings, schedule and effective K: what produced the numbers."""
  lines = []
  if results.get("split_file"):
    lines.append(f"Data: split file `{results['split_file']}` (named {results['dataset']!r})")
  if results.get("dataset_settings"):
    lines.append(f"Per-dataset settings: {results['dataset_settings']}")
  s = results.get("schedule")
  if s and "train" not in s.get("stages", ["train"]):  # optim.* configured but never used
    how = ("fitted in its fit stage on the training images' features" if s["stages"] else
           "no training images used")
    lines.append(f"Schedule: no gradient training ({results['method']}: {how}), images "
                 f"{s['image_size']} px")
  elif s:
    capped = s.get("config_batch_size", s["batch_size"]) != s["batch_size"]
    batch = (f"batch {s['batch_size']}" + (f" (data.batch_size {s['config_batch_size']} capped at "
                                           "the training set)" if capped else "")
             + (f" x {s['steps_per_epoch']} steps" if "steps_per_epoch" in s else ""))
    lines.append(f"Schedule: {s['epochs']} epochs, {batch}, {s['optimizer']} lr "
                 f"{s['lr']:g} ({s['lr_schedule']}, {s['warmup_epochs']} warmup epoch(s)), "
                 f"images {s['image_size']} px")
  eff = results.get("effective_shots")
  if eff:
    lines.append("Effective K per class (training images used): "
                 + ", ".join(f"{c} {n}" + (" (short)" if n < results["shots"] else "")
                             for c, n in eff.items()))
  return "".join(f"- {l}\n" for l in lines) + ("\n" if lines else "")


_CAL_COLUMNS = (("ece", "ECE"), ("mce", "MCE"), ("ace", "ACE"), ("ece_kde", "ECE-KDE"))


def _calibration_markdown(results: dict) -> str:
  """The calibration reference's numbers (10 bins, %) per split, and after temperature scaling."""
  rows = []
  for split in ("val", "test", "base", "novel"):
    block = results.get(split)
    if not isinstance(block, dict) or "calibration" not in block:
      continue
    for label, src, acc in ((split, block, block["accuracy"]),
                            (f"{split}, T-scaled", block.get("temperature_scaled"), None)):
      cal = (src or {}).get("calibration")
      if cal is None:
        continue
      acc = src["accuracy"] if acc is None else acc
      per = cal["per_class_ece"]
      rows.append([label, f"{100 * acc:.2f}", f"{100 * cal['confidence']:.2f}",
                   *[f"{cal[k]:.2f}" for k, _ in _CAL_COLUMNS],
                   *[f"{per[k]:.2f}" if per[k] is not None else "-"
                     for k in ("mean_gt", "mean_pred")]])
  if not rows:
    return ""
  text = ("\n## Calibration (reference definitions, 10 bins, %; the ECE above: 15 bins)\n\n"
          + _md_table(["split", "acc", "confidence", *[n for _, n in _CAL_COLUMNS],
                       "class ECE (true)", "class ECE (pred)"], rows))
  if "temperature" in results:
    t = results["temperature"]
    text += f"\nTemperature T = {t['value']:.4f}, fitted by NLL on {t['fitted_on']}.\n"
  return text


def _shots_text(results: dict) -> str:
  if is_k_independent(results):
    return "no training images (K-independent)"
  return f"{results['shots']}-shot" if results["shots"] else "all training images"


def write_run_plots(workdir, results: dict) -> list[pathlib.Path]:
  """``confusion_matrix_<split>.png`` and ``per_class_f1_<split>.png`` for the reported splits."""
  from biomedjax.tools import provenance
  plt = _pyplot()
  warn = " [RANDOM weights]" if provenance.is_random(results) else ""
  written = []
  for split in ("test", "base", "novel"):
    block = results.get(split)
    if not isinstance(block, dict) or not block.get("confusion_matrix"):
      continue
    names = block.get("classnames") or [str(i) for i in range(len(block["confusion_matrix"]))]
    cm = np.asarray(block["confusion_matrix"], np.float64)
    n = len(names)
    fig, ax = plt.subplots(figsize=(2.2 + 0.75 * n, 1.8 + 0.65 * n), dpi=110)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
      for j in range(n):
        ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=9,
                color="white" if rates[i, j] > 0.6 else "black")
    ax.set_xticks(range(n), names, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{results['method']} on {results['dataset']} ({split})\n"
                 f"accuracy {100 * block['accuracy']:.1f}%{warn}\n(counts; colour = row "
                 "fraction)", fontsize=9)
    fig.tight_layout()
    path = pathlib.Path(workdir) / f"confusion_matrix_{split}.png"
    fig.savefig(path, bbox_inches="tight")  # a few classes make a narrow figure: never clipped
    plt.close(fig)
    written.append(path)
    if isinstance(block.get("per_class"), dict):
      f1 = [100 * block["per_class"][c]["f1"] for c in names]
      fig, ax = plt.subplots(figsize=(6, 0.9 + 0.4 * n), dpi=110)
      ax.barh(range(n), f1, color="tab:blue")
      for i, v in enumerate(f1):
        ax.text(min(v + 1, 92), i, f"{v:.1f}", va="center", fontsize=8)
      ax.set_yticks(range(n), names, fontsize=8)
      ax.invert_yaxis()
      ax.set_xlim(0, 100)
      macro = 100 * block.get("macro_f1", np.mean(f1) / 100)
      ax.axvline(macro, color="k", ls="--", lw=1)  # named in the axis label, not a legend
      ax.set_xlabel(f"F1 (%); dashed line: macro-F1 {macro:.1f}%")
      ax.set_title(f"{results['method']} on {results['dataset']} ({split}): per-class F1{warn}",
                   fontsize=9)
      fig.tight_layout()
      path = pathlib.Path(workdir) / f"per_class_f1_{split}.png"
      fig.savefig(path, bbox_inches="tight")
      plt.close(fig)
      written.append(path)
  loss = results.get("train_loss") or []
  if loss:
    written.append(plot_loss_curve(loss, pathlib.Path(workdir) / "loss_curve.png",
                                   f"{results['method']} on {results['dataset']}: training loss"
                                   f"{warn}"))
  return written


def plot_loss_curve(entries, path: pathlib.Path, title: str) -> pathlib.Path:
  """The logged training loss against the step (``train_loss``: [[step, loss], ...])."""
  plt = _pyplot()
  steps, values = zip(*entries)
  fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
  from matplotlib.ticker import MaxNLocator
  ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=4)
  ax.set_xlim(0, max(steps) * 1.05)
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  if len(steps) == 1:  # a short run logs once (train.log_every_steps)
    title += (f"\n(one logged step: set --config.train.log_every_steps below {steps[0]} to log "
              "more)")
  ax.set_xlabel("step")
  ax.set_ylabel("training loss (logged steps)")
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, bbox_inches="tight")
  plt.close(fig)
  return path


def run_outputs_text(workdir) -> str:
  """Where a finished run's results and figures are: one line for the end of the run."""
  workdir = pathlib.Path(workdir)
  figures = sorted(p.name for p in workdir.glob("*.png"))
  reliability = len(list((workdir / "reliability").glob("*.png")))
  text = f"{workdir}/results.md and results.json"
  if figures:
    text += f"; figures: {', '.join(figures)}"
  if reliability:
    text += f"; {reliability} reliability diagram(s) in {workdir / 'reliability'}"
  return text


def _pyplot():
  import matplotlib  # Imported here: only reports need it, not training.
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  return plt


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


def default_metric(paths) -> str:
  """The runs' common headline metric: macro_f1 when every run is multilabel (IU-Xray),
  else accuracy."""
  kinds = set()
  for path in find_results(paths):
    try:
      kinds.add(json.loads(path.read_text()).get("task_kind"))
    except (OSError, ValueError, AttributeError):
      return "accuracy"  # load_runs names the bad file
  return "macro_f1" if kinds == {"multilabel"} else "accuracy"


def load_runs(paths, metric: str = "accuracy") -> list[dict]:
  """Loads and validates every results.json; duplicate runs are an error naming both files.

  Runs of the same method, data set and K whose configs differ (a smoke run and a full run,
  another batch size) are variants, not duplicates: each gets its own rows, labelled by the
  config keys that differ (``coop [epochs=2, test_batch_size=16]``; ``run_facts.experiment_key``,
  from the config each results.json records). Only the same config and seed twice is an error.
  A K-independent run (zero-shot) counts once per (backbone, dataset, seed) whatever its
  ``shots``: a second one with another K is the same experiment and is left out.
  """
  from biomedjax.tools import provenance
  loaded = []
  for path in find_results(paths):
    try:
      results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise ResultsError(f"{path}: invalid JSON ({e})") from None
    validate_results(results, str(path), metric)
    shots = ANY_K if is_k_independent(results) else results["shots"]
    key = (provenance.backbone_label(results), results["setting"], method_label(results),
           results["dataset"], shots)
    loaded.append((path, results, key))
  labels = _variant_labels(loaded)
  runs, seen = [], {}
  for (path, results, key), label in zip(loaded, labels):
    full = (*key[:2], label, *key[3:], results["seed"])
    if full in seen:
      if key[4] == ANY_K:
        continue
      raise ResultsError(f"{path} and {seen[full]} are the same run {full} (same config and "
                         "seed); remove one")
    seen[full] = path
    runs.append({**results, "_label": label, "method": results["method"], "shots": key[4],
                 "_path": str(path)})
  return runs


_VARIANT_KEYS_SHOWN = 3
_NAMING_KEYS = ("study_cell",)
_GROUP_KEYS = ("data.shots", "data.dataset", "data.setting", "method.name")


def _variant_labels(loaded) -> list[str]:
  """Each run's row label: its method label, plus the config keys in which it differs from the
  other runs of its (backbone, setting, method, dataset, K), if any."""
  from biomedjax import run_facts
  keys = [{k: v for k, v in run_facts.experiment_key(r).items() if k not in _GROUP_KEYS}
          for _, r, _ in loaded]
  members = collections.defaultdict(list)
  for i, (_, _, key) in enumerate(loaded):
    members[key].append(i)
  labels = [key[2] for _, _, key in loaded]
  for idx in members.values():
    names = sorted({k for i in idx for k in keys[i]})
    differ = [k for k in names if len({json.dumps(keys[i].get(k)) for i in idx}) > 1]
    if not differ:
      continue
    # A key that names the run's cell itself (CalibPrompt's study_cell, "calib:plip:CE") and
    # tells every run of the group apart is the label alone: the objective's own keys add nothing.
    named = [k for k in differ if k in _NAMING_KEYS
             and len({json.dumps(keys[i].get(k)) for i in idx}) == len(idx)]
    for i in idx:
      parts = ([str(keys[i].get(named[0]))] if named else
               [f"{k.rsplit('.', 1)[-1]}={keys[i].get(k)}" for k in differ])
      if len(parts) > _VARIANT_KEYS_SHOWN:
        parts = parts[:_VARIANT_KEYS_SHOWN] + [f"+{len(parts) - _VARIANT_KEYS_SHOWN} more"]
      labels[i] += f" [{', '.join(parts)}]"
  return labels


def short_k_cells(runs) -> set[tuple]:
  """(setting, label, dataset, shots) of the groups with a run whose classes had fewer than K
  training images (``effective_shots``): their table cells are marked."""
  return {(r["setting"], method_label(r), r["dataset"], r["shots"]) for r in runs
          if any(n < r["shots"] for n in (r.get("effective_shots") or {}).values())}


def selection_markdown(results: dict) -> str:
  """Which state produced the numbers above: the last epoch's or the best test epoch's."""
  sel = results.get("selection")
  if not isinstance(sel, dict):
    return ""
  last = sel.get("last_test_accuracy")
  last_text = "-" if last is None else f"{100 * last:.2f}%"
  if sel.get("headline") == "best_test":
    return (f"\nModel selection: **best test epoch** (eval.select=best_test, the reference's "
            f"selection on the test split, epochs {sel['best_epochs_considered']}): epoch "
            f"{sel['best_epoch']}, test accuracy {100 * sel['best_test_accuracy']:.2f}% (the "
            f"numbers above); last epoch ({sel['last_epoch']}): {last_text}.\n")
  if sel.get("select") == "best_test":
    return (f"\nModel selection: eval.select=best_test found no epoch in "
            f"{sel['best_epochs_considered']}; the numbers above are the last epoch's "
            f"({last_text}).\n")
  return f"\nModel selection: **last epoch** (eval.select=last): test accuracy {last_text}.\n"


def group(runs: list[dict], metric: str) -> dict[tuple, dict[int, float]]:
  """(setting, method, dataset, shots, split) -> {seed: metric value in percent}; K-independent
  methods have shots ``ANY_K``."""
  groups = collections.defaultdict(dict)
  for run in runs:
    for split in SETTINGS[run["setting"]]:
      key = (run["setting"], method_label(run), run["dataset"], run["shots"], split)
      groups[key][run["seed"]] = 100.0 * run[split][metric]
  return dict(groups)


def _cell(values: dict[int, float] | None, n_seeds: int, ci: bool = False) -> str:
  """``mean ± std``; with ``ci`` (adapter-harness groups) also ``(CI ±1.96·std/√n)``."""
  if not values:
    return "-"
  v = np.array(list(values.values()))
  text = f"{v.mean():.2f} ± {v.std():.2f}"
  if ci and len(v) > 1:  # one run has no interval
    text += f" (CI ±{ci95(v):.2f})"
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
  """(methods that depend on K, datasets, K values); K-independent methods: ``_k_free``."""
  keys = [k for k in groups if k[0] == setting]
  return (sorted({k[1] for k in keys if k[3] != ANY_K}), sorted({k[2] for k in keys}),
          sorted({k[3] for k in keys if k[3] != ANY_K}))


def _k_free(groups, setting):
  return sorted({k[1] for k in groups if k[0] == setting and k[3] == ANY_K})


SHORT_MARK = " (K short)"


def _k_label(k: int, eq: str = "=") -> str:
  """A K column's name; K = 0 is a run on the whole training split (IU-Xray), not 0 shots."""
  return "all training images (K=0)" if k == 0 else f"K{eq}{k}"


def fewshot_tables(groups, n_seeds: int, metric: str, harness=(), short=frozenset()) -> str:
  """(a) methods x K per dataset and averaged; (b) datasets x methods per K. K-independent
  methods (zero-shot) fill one "any K" column instead of repeating under every K. Methods in
  ``harness`` (adapter-harness runs) also show the reference's 1.96·std/√n beside the mean.
  ``short``: (setting, method, dataset, K) cells built from runs with classes below K
  (``short_k_cells``), marked ``(K short)``."""
  methods, datasets, shots = _axes(groups, "few_shot")
  free = _k_free(groups, "few_shot")
  if not methods and not free:
    return ""
  any_k = ["any K"] if free else []
  header = ["method", *any_k, *[_k_label(k) for k in shots]]

  def row(m, cell):
    if m in free:
      return [m, cell(ANY_K), *[""] * len(shots)]
    return [m, *[""] * len(any_k), *[cell(k) for k in shots]]

  def cell(m, d, k):
    text = _cell(groups.get(("few_shot", m, d, k, "test")), n_seeds, m in harness)
    return text + (SHORT_MARK if ("few_shot", m, d, k) in short else "")

  out = [f"## Few-shot {metric} (%), mean ± std over seeds\n"]
  if short:
    out.append(f"{SHORT_MARK.strip()}: some class had fewer than K training images (used "
               "whole); each run's results.md lists its effective K per class.\n")
  if any(key[1] in harness and len(v) > 1 for key, v in groups.items()
         if key[0] == "few_shot"):  # a cell shows a CI
    out.append("(CI ±x): 1.96·std/√n (population std), the column the adapter harness "
               "(BiomedCoOp main.py) reports as \"std\" for its three runs.\n")
  for d in datasets:
    rows = [row(m, lambda k: cell(m, d, k)) for m in [*free, *methods]]
    out.append(f"### {d}\n\n" + _md_table(header, rows))
  rows = [row(m, lambda k: _mean_over_datasets(groups, "few_shot", m, datasets, k, "test",
                                               n_seeds)[1]) for m in [*free, *methods]]
  out.append(f"### Average over {_count(len(datasets), 'dataset')}\n\n"
               + _md_table(header, rows))
  for k in shots:
    cols = [(m, ANY_K) for m in free] + [(m, k) for m in methods]
    names = [f"{m} (any K)" for m in free] + methods
    rows = [[d, *[cell(m, d, kk) for m, kk in cols]] for d in datasets]
    rows.append(["**Average**", *[_mean_over_datasets(
        groups, "few_shot", m, datasets, kk, "test", n_seeds)[1] for m, kk in cols]])
    out.append(f"### {_k_label(k, ' = ')}: datasets × methods\n\n"
               + _md_table(["dataset", *names], rows))
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
      title = f"Average over {_count(len(datasets), 'dataset')}" if d is None else d
      out.append(f"### {title}\n\n" + _md_table(["method", "base", "novel", "HM"], rows))
  return "\n".join(out)


def ci95(values) -> float:
  """1.96 * std / sqrt(n), population std: the "std" column of the adapter harness's CSVs
  (BiomedCoOp main.py writes 1.96 * np.std(accs) / sqrt(3) for its three runs)."""
  v = np.asarray(values, np.float64)
  return float(1.96 * v.std() / np.sqrt(len(v)))


def write_csv(sections, path: pathlib.Path) -> None:
  """One row per group: the numbers behind every table cell, seeds included.

  ``sections``: ``[(backbone label, groups)]``. K-independent groups have shots ``any``."""
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["backbone", "setting", "method", "dataset", "shots", "split", "mean", "std",
                     "n", "seeds", "ci95"])
    for label, groups in sections:
      for key in sorted(groups):
        v = np.array(list(groups[key].values()))
        seeds = " ".join(map(str, sorted(groups[key])))
        shots = "any" if key[3] == ANY_K else key[3]
        writer.writerow([label, key[0], key[1], key[2], shots, *key[4:], f"{v.mean():.4f}",
                         f"{v.std():.4f}", len(v), seeds, f"{ci95(v):.4f}"])


def plot_fewshot_curve(groups, path: pathlib.Path, metric: str, n_seeds: int,
                       chance: dict | None = None, title: str = "") -> bool:
  """One panel per dataset: mean ± std over seeds vs K, one line per method, K-independent
  methods as horizontal lines, chance level (100 / number of classes) dotted. Open markers flag
  means over fewer seeds than the report's. Returns False when there are no few-shot runs."""
  methods, datasets, shots = _axes(groups, "few_shot")
  free = _k_free(groups, "few_shot")
  whole = 0 in shots  # shots=0: trained on the whole train split (IU-Xray), no point on a K axis
  shots = [k for k in shots if k > 0]
  if (not methods and not free) or (whole and not shots):
    return False
  plt = _pyplot()
  cols = min(3, len(datasets))
  rows_n = -(-len(datasets) // cols)
  fig_w = max(4.6 * cols, 6.0)  # one panel: wide enough for the title's two lines
  fig, axes = plt.subplots(rows_n, cols, figsize=(fig_w, 3.6 * rows_n + 0.5), dpi=110,
                           squeeze=False)
  colors = {m: f"C{i}" for i, m in enumerate([*methods, *free])}
  markers = {m: "osD^vP*X<>"[i % 10] for i, m in enumerate(methods)}
  # Methods side by side around each K (log axis), so equal means (100 %) never hide a marker.
  shift = {m: 2 ** (0.06 * (i - (len(methods) - 1) / 2)) for i, m in enumerate(methods)}
  xs = shots or [1]
  for ax, d in zip(axes.flat, datasets):
    for m in methods:
      pts = [(k, groups[key]) for k in shots if (key := ("few_shot", m, d, k, "test")) in groups]
      if not pts:
        continue
      k_, mean, std = zip(*[(k, np.mean(list(g.values())), np.std(list(g.values())))
                            for k, g in pts])
      kx = [k * shift[m] for k in k_]
      ax.errorbar(kx, mean, yerr=std, marker=markers[m], capsize=3, color=colors[m], label=m,
                  clip_on=False)
      partial = [(k * shift[m], v) for (k, g), v in zip(pts, mean) if len(g) < n_seeds]
      if partial:
        ax.plot(*zip(*partial), ls="none", marker=markers[m], ms=9, mfc="white", mec=colors[m],
                clip_on=False, zorder=3)
    for m in free:
      g = groups.get(("few_shot", m, d, ANY_K, "test"))
      if g:
        v, sd = np.mean(list(g.values())), np.std(list(g.values()))
        ax.axhline(v, color=colors[m], ls="--", label=f"{m} (any K)")
        if sd > 0:
          ax.axhspan(v - sd, v + sd, color=colors[m], alpha=0.15)
    if chance and chance.get(d):
      ax.axhline(100.0 / chance[d], color="gray", ls=":", label=f"chance (1/{chance[d]})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(k) for k in xs])
    ax.set_xlim(min(xs) / 2 ** 0.4, max(xs) * 2 ** 0.4)  # the side-by-side markers off the frame
    ax.margins(y=0.12)
    ax.set_xlabel("shots per class (K)")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(d, fontsize=10)
    ax.grid(alpha=0.3)
    # below the panel: inside, "best" still covered a marker at the edge (a K's only point)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3,
              frameon=False)
  for ax in list(axes.flat)[len(datasets):]:
    ax.axis("off")
  import textwrap
  width = int(fig_w * 13)  # characters that fit the figure's width at this font size
  lines = [*(textwrap.wrap(title, width) if title else []), *textwrap.wrap(
      f"few-shot {metric}, mean ± std over seeds (open markers: fewer seeds)", width)]
  fig.suptitle("\n".join(lines), fontsize=10)
  fig.tight_layout()
  fig.savefig(path, bbox_inches="tight")  # the title is never clipped
  plt.close(fig)
  return True


_CAL_METRICS = (("accuracy", "acc"), ("ece", "ECE"), ("mce", "MCE"), ("ace", "ACE"),
                ("ece_T", "ECE, T-scaled"))


def calibration_groups(runs) -> dict[tuple, dict[str, dict[int, float]]]:
  """(setting, method, dataset, shots, split) -> {metric: {seed: value in %}} for the runs
  whose results carry the calibration block (multiclass runs)."""
  out = collections.defaultdict(lambda: collections.defaultdict(dict))
  for run in runs:
    for split in SETTINGS[run["setting"]]:
      block = run[split]
      cal = block.get("calibration")
      if not isinstance(cal, dict):
        continue
      key = (run["setting"], method_label(run), run["dataset"], run["shots"], split)
      values = {"accuracy": 100.0 * block["accuracy"], "ece": cal["ece"], "mce": cal["mce"],
                "ace": cal["ace"]}
      scaled = block.get("temperature_scaled")
      if isinstance(scaled, dict):
        values["ece_T"] = scaled["calibration"]["ece"]
      for k, v in values.items():
        out[key][k][run["seed"]] = v
  return out


def calibration_tables(cal_groups, n_seeds: int) -> str:
  """Accuracy beside ECE / MCE / ACE (reference definitions), mean ± std over seeds."""
  if not cal_groups:
    return ""
  rows = [[m, d, str(k), split, *[_cell(g.get(name), n_seeds) for name, _ in _CAL_METRICS]]
          for (_, m, d, k, split), g in sorted(cal_groups.items())]
  return ("## Calibration (%), mean ± std over seeds (10 bins; ECE, T-scaled: after post-hoc "
          "temperature scaling, where the run fitted one)\n\n"
          + _md_table(["method", "dataset", "K", "split", *[n for _, n in _CAL_METRICS]], rows))


def plot_calibration_vs_accuracy(cal_groups, path: pathlib.Path) -> bool:
  """ECE against accuracy, one point per (method, dataset, K, split) group mean, one colour per
  method: which methods buy accuracy with over-confidence. False when there is nothing to plot."""
  if not cal_groups:
    return False
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
  methods = sorted({k[1] for k in cal_groups})
  xs = []
  for i, m in enumerate(methods):
    pts = [(np.mean(list(g["accuracy"].values())), np.mean(list(g["ece"].values())))
           for k, g in cal_groups.items() if k[1] == m]
    xs += [x for x, _ in pts]
    # Open markers shrinking per method: points on top of each other (100 %) all stay visible.
    ax.scatter(*zip(*pts), label=m, s=max(80 - 18 * i, 12), marker="osD^vP*X<>"[i % 10],
               facecolors="none", edgecolors=f"C{i}", linewidths=1.5, clip_on=False)
  # An accuracy axis ends at 100 % (autoscale around points at 100 % ran 96-104 %).
  ax.set_xlim(max(0.0, min(xs) - 5), min(100.0, max(xs) + 5) if max(xs) < 99.5 else 100.5)
  ax.set_xlabel("accuracy (%)")
  ax.set_ylabel("ECE (%), 10 bins (lower is better)")
  ax.set_title("Calibration vs accuracy (one point per dataset, K, split; mean over seeds)",
               fontsize=9)
  ax.margins(y=0.1)  # a point at the highest ECE sat on the frame
  ax.grid(alpha=0.3)
  # beside the axes: inside, the legend covered points in its corner
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
  fig.tight_layout()
  fig.savefig(path, bbox_inches="tight")
  plt.close(fig)
  return True


def _num_classes(run: dict) -> int | None:
  for split in SETTINGS[run["setting"]]:
    block = run.get(split, {})
    n = block.get("classnames") or block.get("confusion_matrix")
    if n:
      return len(n)
  return None


def _count(n: int, noun: str) -> str:
  return f"{n} {noun}" + ("" if n == 1 else "s")


def _slug(text: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def make_report(paths, out_dir, metric: str = "accuracy") -> str:
  """Loads runs, writes report.md, summary.csv and the few-shot curves; returns the Markdown.

  Runs are grouped by backbone first (converted directory + manifest hash, or RANDOM preset):
  numbers from different weights never share a table, and random-weight sections say so.
  Each backbone's curves: ``fewshot_curve_<backbone>.png`` (a name that does not change when
  runs of another backbone join the report).
  """
  from biomedjax.tools import provenance
  runs = load_runs(paths, metric)
  seeds = sorted({r["seed"] for r in runs})
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  by_backbone = collections.defaultdict(list)
  for r in runs:
    by_backbone[provenance.backbone_label(r)].append(r)
  labels = sorted(by_backbone, key=lambda l: (l.startswith("RANDOM"), l))
  text = f"# Results: {_count(len(runs), 'run')}, seeds {seeds}\n"
  if len(seeds) > 1:
    text += f"\nCells marked (n=k) have fewer than {len(seeds)} seeds.\n"
  sections = []
  for label in labels:
    group_runs = by_backbone[label]
    groups = group(group_runs, metric)
    sections.append((label, groups))
    text += f"\n# Backbone: {label} ({_count(len(group_runs), 'run')})\n\n"
    if any(provenance.is_random(r) for r in group_runs):
      text += ("> **WARNING: RANDOM weights.** These numbers measure the machinery only; they "
               "say nothing about medical performance.\n\n")
    harness = {method_label(r) for r in group_runs if is_harness(r)}
    short = short_k_cells(group_runs)
    text += "\n".join(t for t in (fewshot_tables(groups, len(seeds), metric, harness, short),
                                   base2novel_tables(groups, len(seeds), metric)) if t)
    text += report_cost.cost_table(group_runs)  # beside the accuracy tables (Table 2 shape)
    text += tfds_source.report_note(group_runs)  # runs on tfds's split, not the paper's
    chance = {r["dataset"]: _num_classes(r) for r in group_runs}
    name = f"fewshot_curve_{_slug(label)}.png"  # the same name however many backbones
    title = (f"{label} WEIGHTS (machinery only, not medical performance)"
             if any(provenance.is_random(r) for r in group_runs) else label)
    plot_fewshot_curve(groups, out_dir / name, metric, len(seeds), chance, title)
  cal_groups = calibration_groups(runs)
  cal = calibration_tables(cal_groups, len(seeds))
  if cal:
    text += "\n" + cal
  from biomedjax.evaluation import calib_study  # CalibPrompt's study table (calib:... runs)
  text += calib_study.report_section(runs)
  _atomic_write(out_dir / "report.md", text)
  write_csv(sections, out_dir / "summary.csv")
  plot_calibration_vs_accuracy(cal_groups, out_dir / "calibration_vs_accuracy.png")
  return text


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m biomedjax.report",
                                   description=__doc__.split("\n")[0])
  parser.add_argument("workdirs", nargs="+", help="run workdirs or directories above them")
  parser.add_argument("--out", default="report", help="output directory (default: ./report)")
  parser.add_argument("--metric", default="", help="key of the split metrics to tabulate "
                      "(default: accuracy; macro_f1 when every run is multilabel)")
  parser.add_argument("--published", default="", help="also compare with a published table "
                      "(biomedjax/published/compare.py), e.g. biomedcoop_fewshot; runs of a "
                      "configs/paper/ recipe are compared with theirs without it")
  args = parser.parse_args(argv)
  try:
    print(make_report(args.workdirs, args.out, args.metric or default_metric(args.workdirs)))
    from biomedjax.published import compare  # runs of a paper recipe: beside the paper
    detected = compare.detect(args.workdirs)  # a recipe's table, and those of the same runs
    tables = [args.published] if args.published else compare.SAME_RUNS.get(
        detected, [detected] if detected else [])
    for table in tables:
      print(compare.compare(args.workdirs, table, args.out))
  except (ResultsError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def cli() -> None:
  """Console script ``biomedjax-report``."""
  sys.exit(main())


if __name__ == "__main__":
  cli()
