"""CalibPrompt's study in the report: ``parse_test_res.py``'s numbers and the paper-shaped table.

A study run is labelled by ``configs/calibprompt.py`` with ``config.study_cell =
"calib:<backbone>:<objective>"`` (it reaches ``results.json`` as ``study_cell``), so the report
knows which Med-VLM and which objective produced it even for random-weight smoke runs.

* ``summarize``: per (backbone, dataset, objective, K), the mean and standard deviation over
  seeds of accuracy, ECE, MCE, ACE and ECE-KDE in %, as the reference's ``parse_test_res.py``
  prints them for its drivers' keywords: ``np.mean`` and ``np.std`` (population, ddof 0;
  parse_test_res.py:228-229), or with ``ci95`` 1.96 std / sqrt(n) (parse_test_res.py:61-62).
* ``study_table``: the paper's shape: rows are objectives, columns backbone · dataset, each cell
  our ECE (mean ± std over seeds) beside the published one where the repository has it
  (``PUBLISHED_ECE``; carried here as facts, never read from elsewhere at run time).
"""

from __future__ import annotations

import collections

import numpy as np

PREFIX = "calib:"
METRICS = ("accuracy", "ece", "mce", "ace", "ece_kde")
BACKBONES = ("plip", "quiltnet", "biomedclip", "medclip")
DATASETS = {"plip": ("kather", "pannuke", "digestpath"),
            "quiltnet": ("kather", "pannuke", "digestpath"),
            "biomedclip": ("covid", "rsna18"), "medclip": ("covid", "rsna18")}
DISPLAY = {"plip": "PLIP", "quiltnet": "QuiltNet", "biomedclip": "BiomedCLIP",
           "medclip": "MedCLIP", "covid": "COVID", "rsna18": "RSNA18", "kather": "Kather",
           "pannuke": "PanNuke", "digestpath": "DigestPath"}
ROW_ORDER = ("zeroshot", "CE", "LS", "FL", "DCA", "MDCA", "MMCE", "MBLS", "LOGITNORM",
             "ECCV_PENALTY", "ECCV_ZS", "MARGIN_MEAN_VAR", "TEXT_MOMENT_MATCHING", "calibprompt")

# ECE (%) of CE prompt tuning and of CalibPrompt, 8 shots, seed 1: the README's results table of
# iabh1shekbasu/CalibPrompt (assets/results.png), (backbone, dataset, objective) -> ECE.
PUBLISHED_ECE = {
    ("plip", "kather", "CE"): 5.92, ("plip", "kather", "calibprompt"): 3.11,
    ("plip", "pannuke", "CE"): 17.82, ("plip", "pannuke", "calibprompt"): 2.19,
    ("plip", "digestpath", "CE"): 9.50, ("plip", "digestpath", "calibprompt"): 3.08,
    ("quiltnet", "kather", "CE"): 2.49, ("quiltnet", "kather", "calibprompt"): 3.58,
    ("quiltnet", "pannuke", "CE"): 19.70, ("quiltnet", "pannuke", "calibprompt"): 2.47,
    ("quiltnet", "digestpath", "CE"): 11.27, ("quiltnet", "digestpath", "calibprompt"): 0.77,
    ("biomedclip", "covid", "CE"): 6.61, ("biomedclip", "covid", "calibprompt"): 4.69,
    ("biomedclip", "rsna18", "CE"): 7.02, ("biomedclip", "rsna18", "calibprompt"): 5.74,
    ("medclip", "covid", "CE"): 27.51, ("medclip", "covid", "calibprompt"): 27.41,
    ("medclip", "rsna18", "CE"): 17.21, ("medclip", "rsna18", "calibprompt"): 17.14,
}


def study_cell(backbone: str, objective: str) -> str:
  """The ``config.study_cell`` label of a study run."""
  return f"{PREFIX}{backbone}:{objective}"


def study_key(results: dict) -> tuple[str, str] | None:
  """(backbone, objective) of a study run, or None for any other run."""
  v = results.get("study_cell") or ""
  if not v.startswith(PREFIX):
    return None
  backbone, _, objective = v[len(PREFIX):].partition(":")
  return backbone, objective


def seed_stats(values, ci95: bool = False) -> tuple[float, float]:
  """(mean, spread) over seeds as parse_test_res.py: np.std, or its 95% interval."""
  v = np.asarray(values, np.float64)
  spread = 1.96 * np.std(v) / np.sqrt(len(v)) if ci95 else np.std(v)
  return float(np.mean(v)), float(spread)


def _metrics(block: dict) -> dict[str, float]:
  cal = block.get("calibration") or {}
  out = {"accuracy": 100.0 * block["accuracy"]}
  out.update({k: float(cal[k]) for k in METRICS[1:] if k in cal})
  return out


def summarize(runs, ci95: bool = False) -> dict[tuple, dict]:
  """(backbone, dataset, objective, K) -> {metric: (mean, spread, n seeds)} over the test split."""
  values = collections.defaultdict(lambda: collections.defaultdict(dict))
  for run in runs:
    key = study_key(run)
    if key is None or not isinstance(run.get("test"), dict):
      continue
    cell = (key[0], run["dataset"], key[1], run["shots"])
    for metric, value in _metrics(run["test"]).items():
      values[cell][metric][run["seed"]] = value
  return {cell: {m: (*seed_stats(list(by_seed.values()), ci95), len(by_seed))
                 for m, by_seed in per.items()}
          for cell, per in values.items()}


def _row_rank(objective: str) -> tuple:
  return (ROW_ORDER.index(objective) if objective in ROW_ORDER else len(ROW_ORDER), objective)


def summary_table(summary: dict) -> str:
  """parse_test_res.py's summary, one row per cell: "mean ± std" of each metric in %."""
  rows = []
  for (b, d, o, k), m in sorted(summary.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                 _row_rank(kv[0][2]))):
    cells = [f"{m[x][0]:.2f} ± {m[x][1]:.2f}" if x in m else "—" for x in METRICS]
    n = max(v[2] for v in m.values())
    shots = k if isinstance(k, int) and k >= 0 else "ZS"  # report.ANY_K: a K-independent run
    rows.append(f"| {DISPLAY.get(b, b)} | {DISPLAY.get(d, d)} | {o} | {shots} | {n} | "
                + " | ".join(cells) + " |")
  header = "| backbone | dataset | objective | K | seeds | " + " | ".join(METRICS) + " |"
  return "\n".join([header, "|" + "---|" * (5 + len(METRICS)), *rows]) + "\n"


def study_table(summary: dict) -> str:
  """Rows: objectives; columns: backbone · dataset (study order, then any other); cells: our
  ECE mean ± std over seeds, and the published ECE in brackets where the paper's repo has it."""
  present = {(b, d) for b, d, _, _ in summary}
  columns = [(b, d) for b in BACKBONES for d in DATASETS[b]]
  columns += sorted(present - set(columns))
  objectives = sorted({o for _, _, o, _ in summary} | {o for _, _, o in PUBLISHED_ECE},
                      key=_row_rank)
  by_cell = {}
  for (b, d, o, k), m in summary.items():
    by_cell.setdefault((b, d, o), []).append((k, m))
  lines = ["| objective | " + " | ".join(f"{DISPLAY.get(b, b)} · {DISPLAY.get(d, d)}"
                                         for b, d in columns) + " |",
           "|---|" + "---|" * len(columns)]
  for o in objectives:
    cells = []
    for b, d in columns:
      ours = by_cell.get((b, d, o), [])
      text = "; ".join((f"{m['ece'][0]:.2f} ± {m['ece'][1]:.2f}" if "ece" in m else "—")
                       + (f" (K={k})" if len(ours) > 1 else "") for k, m in sorted(ours))
      published = PUBLISHED_ECE.get((b, d, o))
      if published is not None:
        text = f"{text or '—'} [pub {published:.2f}]"
      cells.append(text or "")
    lines.append(f"| {o} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def report_section(runs) -> str:
  """The report's CalibPrompt study section, or "" when no run is a study run."""
  from biomedjax.tools import provenance
  summary = summarize(runs)
  if not summary:
    return ""
  random = any(provenance.is_random(r) for r in runs if study_key(r) is not None)
  warning = ("> **WARNING: RANDOM weights in some study runs.** Their numbers measure the "
             "machinery only; the published column is the paper's real models.\n\n"
             if random else "")
  return ("\n## CalibPrompt study: ECE (%) by objective, ours (mean ± std over seeds) "
          "[published, 8 shots, seed 1]\n\n" + warning + study_table(summary)
          + "\n## CalibPrompt study: test metrics (%), mean ± std over seeds "
          "(parse_test_res.py)\n\n" + summary_table(summary))
