"""Our runs beside a published table: ``python -m biomedjax.report RUNS --published TABLE``.

For each published cell: ``ours mean ± std (n) | published | Δ`` (Δ = ours − published, in the
table's unit), where ours aggregates the runs the way the source aggregated its own: per seed
the mean over the cell's datasets, then mean ± std (ddof 0, as the report) over the seeds.
Where the source's printed average is not the mean of its own rows (``PRINTED_AVERAGE_DIFFERS``,
``BASE2NOVEL_HM``), both are shown, each labelled. A summary line says how many cells lie
within one std (over seeds) of the published value, give or take half the published value's
last printed digit, and which |Δ| is largest; an average over fewer datasets than the table's is
shown but not compared; ``paper_<table>_scatter.png``
plots ours against published with the y = x line.

Every row names the provenance of its runs: the backbone (manifest sha256, or RANDOM) and the
split files' sha256; a split whose sha256 is not the published file's is flagged in the row
(a different split explains a different number). Rows with any random-weight run say RANDOM.

The IU-Xray study's Tables 1-3 (``iuxray_table1|2|3``) are one seed per setting (zs / ft / lp,
the runs' ``Method.study_name``), in fractions printed to 3 decimals: each cell is a setting's
number from results.json's ``multilabel_study`` (the study's own decision rules and embedding
distances, ``biomedjax/studies/multilabel_study.py``); Table 1's training time is shown, not
compared. The recipe (configs/paper/iuxray.py) names Table 1; the report compares all three.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib

import numpy as np

from biomedjax import published
from biomedjax.evaluation import report
from biomedjax.tools import provenance

HEADER = ["weights", "cell", "ours mean ± std (n)", "published", "Δ", "provenance"]


@dataclasses.dataclass
class Cell:
  label: str
  ours: list            # one value per seed (already aggregated over the cell's datasets)
  published: float | None
  runs: list            # the runs behind it
  note: str = ""        # set when an average lacks datasets: then it is shown, not compared
  tolerance: float = 1e-9  # half a unit of the published value's last printed digit
  digits: int = 2       # decimals shown (the IU-Xray tables print fractions to 3)
  printed: str = ""     # the published value as the source printed it ("31.890")

  @property
  def compared(self) -> bool:
    return bool(self.ours) and self.published is not None and not self.note

  @property
  def mean(self) -> float | None:
    return float(np.mean(self.ours)) if self.ours else None

  @property
  def std(self) -> float:
    return float(np.std(self.ours)) if self.ours else 0.0

  @property
  def delta(self) -> float | None:
    return self.mean - self.published if self.compared else None

  @property
  def within(self) -> bool:
    """|Δ| <= std, the published value being known to half its last printed digit."""
    return self.delta is not None and abs(self.delta) <= self.std + self.tolerance


def half_unit(text: str) -> float:
  """Half a unit of the last printed digit of ``text`` ("82.6" -> 0.05, "61.00" -> 0.005)."""
  decimals = len(text.partition(".")[2])
  return 0.5 * 10.0 ** -decimals


def _published(row: dict, column: str) -> dict:
  """Cell keywords for a published value: the value and its rounding tolerance."""
  return {"published": published.value(row, column), "tolerance": half_unit(row[column]),
          "printed": row[column]}


def _raw_method(run: dict) -> str:
  return run["method"].split(" [")[0]


def _value(run: dict, split: str, metric: str) -> float:
  block = run[split]
  if metric == "ece":
    return float(block["calibration"]["ece"])
  return 100.0 * float(block[metric])


def per_seed(runs, split="test", metric="accuracy", fn=None) -> list[float]:
  """Per seed: the mean over datasets of the runs' values (or ``fn(runs of the seed)``)."""
  seeds = collections.defaultdict(list)
  for r in runs:
    seeds[r["seed"]].append(r)
  if fn is not None:
    return [fn(rs) for _, rs in sorted(seeds.items())]
  return [float(np.mean([_value(r, split, metric) for r in rs])) for _, rs in sorted(seeds.items())]


def _hm(b: float, n: float) -> float:
  return 2 * b * n / (b + n) if b + n else 0.0


def _hm_of_means(rs) -> float:
  return _hm(np.mean([_value(r, "base", "accuracy") for r in rs]),
             np.mean([_value(r, "novel", "accuracy") for r in rs]))


def _mean_of_hms(rs) -> float:
  return float(np.mean([_hm(_value(r, "base", "accuracy"), _value(r, "novel", "accuracy"))
                        for r in rs]))


def _coverage(runs, expected) -> str:
  have = {r["dataset"] for r in runs}
  return "" if len(have) >= expected else f"{len(have)}/{expected} datasets"


def fewshot_cells(runs) -> list[Cell]:
  cells = []
  for row in published.load("biomedcoop_fewshot"):
    method, k = published.METHOD_KEYS[row["method"]], int(row["shots"])
    rs = [r for r in runs if _raw_method(r) == method and r["shots"] == k
          and r["setting"] == "few_shot"]
    cells.append(Cell(f"{row['method']} K={k}", per_seed(rs), runs=rs,
                      note=_coverage(rs, len(published.BIOMEDCOOP_DATASETS)),
                      **_published(row, "accuracy")))
  return cells


def base2novel_cells(runs) -> list[Cell]:
  cells = []
  n_datasets = len(published.BIOMEDCOOP_BASE2NOVEL_DATASETS)
  for row in published.load("biomedcoop_base2novel"):
    method = published.METHOD_KEYS[row["method"]]
    rs = [r for r in runs if _raw_method(r) == method and r["setting"] == "base2novel"]
    cov = _coverage(rs, n_datasets)
    for split in ("base", "novel"):
      cells.append(Cell(f"{row['method']} {split}", per_seed(rs, split), runs=rs, note=cov,
                        **_published(row, split)))
    printed = published.BASE2NOVEL_HM.get(row["method"], published.BASE2NOVEL_HM_DEFAULT)
    for definition, fn in (("mean_of_hms", _mean_of_hms), ("hm_of_means", _hm_of_means)):
      is_printed = definition == printed
      cells.append(Cell(
          f"{row['method']} HM ({definition.replace('_', ' ')}"
          + (", the published definition)" if is_printed else ", other definition)"),
          per_seed(rs, fn=fn), runs=rs,
          note=cov if is_printed else "not compared: the source's HM is the other definition",
          **_published(row, "hm")))
  return cells


def biomedvr_cells(runs) -> list[Cell]:
  rows = published.load("biomedvr_16shot")
  cells = []
  by_method = collections.defaultdict(dict)
  for row in rows:
    by_method[row["method"]][row["key"]] = row
  for name, entries in by_method.items():
    method = published.METHOD_KEYS[name]
    mine = [r for r in runs if _raw_method(r) == method and r["shots"] == 16]
    datasets = [k for k in entries if k != "average"]
    for key in datasets:
      rs = [r for r in mine if r["dataset"] == key]
      cells.append(Cell(f"{name} {entries[key]['dataset']}", per_seed(rs), runs=rs,
                        **_published(entries[key], "accuracy")))
    rs = [r for r in mine if r["dataset"] in datasets]
    ours = per_seed(rs)
    cov = _coverage(rs, len(datasets))
    cells.append(Cell(f"{name} Avg. (printed)", ours, runs=rs, note=cov,
                      **_published(entries["average"], "accuracy")))
    if name in published.PRINTED_AVERAGE_DIFFERS["biomedvr_16shot"]:
      mean_rows = float(np.mean([published.value(entries[k], "accuracy") for k in datasets]))
      cells.append(Cell(f"{name} Avg. (mean of the published rows; the printed Avg. differs)",
                        ours, mean_rows, rs, cov))
  return cells


def calibprompt_cells(runs) -> list[Cell]:
  cells = []
  for row in published.load("calibprompt_ece"):
    backbone = published.BACKBONE_KEYS[row["backbone"]]
    dataset = published.CALIBPROMPT_DATASET_KEYS[row["dataset"]]
    objective = {"CE": "ce", "CalibPrompt": "calibprompt"}[row["objective"]]
    variant = f"backbone={backbone},objective={objective}"
    rs = [r for r in runs if _raw_method(r) == "calibprompt" and r.get("variant") == variant
          and r["dataset"] == dataset]
    cells.append(Cell(f"{row['backbone']} {row['dataset']} {row['objective']} ECE",
                      per_seed(rs, metric="ece"), runs=rs, **_published(row, "ece_percent")))
  return cells


def iuxray_study(run) -> dict | None:
  """The IU-Xray study's numbers of a run: results.json's ``multilabel_study`` (written by every
  multilabel run), else computed from the ``multilabel_setting.npz`` beside an older
  results.json; None for a run of another kind."""
  from biomedjax.studies import multilabel_study
  if "multilabel_study" in run:
    return run["multilabel_study"]
  npz = pathlib.Path(run.get("_path", "")).parent / multilabel_study.SETTING_FILE
  return multilabel_study.record(npz) if run.get("_path") and npz.is_file() else None


# Table 1's columns -> (label, where the study's record holds the number). F1 and exact match are
# the study's rule A (``rowminmax@0.5``), LRAP and coverage on the scores, the distances those of
# the raw test embeddings (biomedjax/studies/multilabel_study.py).
IUXRAY_TABLE1 = {
    "inter_class_dist": ("inter-class distance", ("separability", "inter")),
    "intra_class_dist": ("intra-class distance", ("separability", "intra")),
    "ratio": ("inter/intra ratio", ("separability", "ratio")),
    "f1": ("macro-F1 (rowminmax@0.5)", ("table1", "macro_f1")),
    "exact_match": ("exact match (rowminmax@0.5)", ("table1", "exact_match")),
    "lrap": ("LRAP", ("table1", "lrap")),
    "coverage_error": ("coverage error", ("table1", "coverage_error")),
    "time_min": ("training time (min)", ("minutes",)),
}
NOT_COMPARED = {"time_min": "not compared: wall time depends on the machine"}


def _iuxray_cells(runs, table: str, cells_of, getter) -> list[Cell]:
  """One cell per (published row, column): ``cells_of(row)`` -> [(setting, column, label)];
  a run belongs to a setting (zs / ft / lp) by its study name (``Method.study_name``)."""
  studies = [(r, iuxray_study(r)) for r in runs if r["dataset"] == "iuxray"]
  cells = []
  for row in published.load(table):
    for setting, column, label in cells_of(row):
      if not row[column]:
        continue  # no value in the source (zero-shot has no training time)
      pairs = [(r, v) for r, s in studies if s and s["name"] == setting
               and (v := getter(s, row, column)) is not None]

      def value(rs, pairs=pairs):  # the mean over a seed's runs
        return float(np.mean([v for r, v in pairs if r in rs]))
      cells.append(Cell(f"{setting} {label}", per_seed([r for r, _ in pairs], fn=value),
                        runs=[r for r, _ in pairs], note=NOT_COMPARED.get(column, ""),
                        digits=3, **_published(row, column)))
  return cells


def _dig(record: dict, path) -> float | None:
  """The number at ``path`` in a study record; None where the run has none (a setting file
  without embeddings has no distances; zero-shot has no training time)."""
  for key in path:
    record = record.get(key) if isinstance(record, dict) else None
  return None if record is None else float(record)


def iuxray_table1_cells(runs) -> list[Cell]:
  return _iuxray_cells(
      runs, "iuxray_table1",
      lambda row: [(row["setting"], c, label) for c, (label, _) in IUXRAY_TABLE1.items()],
      lambda s, row, column: _dig(s, IUXRAY_TABLE1[column][1]))


def iuxray_table2_cells(runs) -> list[Cell]:
  return _iuxray_cells(runs, "iuxray_table2",
                       lambda row: [(m, m, f"{row['disease']} F1") for m in published.IUXRAY_MODES],
                       lambda s, row, _: _dig(s, ("per_label_f1", row["disease"])))


def iuxray_table3_cells(runs) -> list[Cell]:
  return _iuxray_cells(runs, "iuxray_table3",
                       lambda row: [(m, m, f"{row['domain']} F1") for m in published.IUXRAY_MODES],
                       lambda s, row, _: _dig(s, ("per_domain_f1", row["domain"])))


CELLS = {"biomedcoop_fewshot": fewshot_cells, "biomedcoop_base2novel": base2novel_cells,
         "biomedvr_16shot": biomedvr_cells, "calibprompt_ece": calibprompt_cells,
         "iuxray_table1": iuxray_table1_cells, "iuxray_table2": iuxray_table2_cells,
         "iuxray_table3": iuxray_table3_cells}
# Tables read from the same runs: a recipe names the first, the report compares all of them.
SAME_RUNS = {"iuxray_table1": ("iuxray_table1", "iuxray_table2", "iuxray_table3")}
# The results.json metric every run of a table must carry (load_runs checks it).
RUN_METRIC = {t: "macro_f1" for t in SAME_RUNS["iuxray_table1"]}


def provenance_text(runs) -> str:
  """Backbone(s) and split files of the runs; a split that is not the published one is
  flagged (name and both hashes)."""
  if not runs:
    return ""
  backbones = sorted({provenance.backbone_label(r) for r in runs})
  splits, flagged = {}, []
  for r in runs:
    split = r.get("provenance", {}).get("split_file") or {}
    if not split:
      continue
    name = pathlib.Path(split["path"]).name
    splits[name] = split["sha256"]
  for name, digest in sorted(splits.items()):
    expected = published.SPLIT_SHA256.get(name)
    if expected is not None and digest != expected:
      flagged.append(f"SPLIT DIFFERS {name} {digest[:12]} (published {expected[:12]})")
  text = "backbone " + "; ".join(backbones)
  if splits:  # (IU-Xray's runs split by uid: no split file)
    text += "; split " + ", ".join(f"{n} {d[:12]}" for n, d in sorted(splits.items()))
  return text + ("; " + "; ".join(flagged) if flagged else "")


def _fmt(x, digits=2) -> str:
  return "-" if x is None else f"{x:.{digits}f}"


def row_of(cell: Cell) -> list[str]:
  random = "RANDOM" if any(provenance.is_random(r) for r in cell.runs) else ""
  d = cell.digits
  ours = "-" if not cell.ours else f"{cell.mean:.{d}f} ± {cell.std:.{d}f} ({len(cell.ours)})"
  if cell.note and cell.ours:
    ours += f" [{cell.note}]"
  delta = "-" if cell.delta is None else f"{round(cell.delta, 6) + 0.0:+.{d}f}"  # no "-0.00"
  pub = "-" if cell.published is None else cell.printed or f"{cell.published:.6g}"
  return [random, cell.label, ours, pub, delta, provenance_text(cell.runs)]


def summary(cells: list[Cell]) -> str:
  compared = [c for c in cells if c.compared]
  if not compared:
    return "0 cells with both our runs and a published value"
  within = sum(c.within for c in compared)
  worst = max(compared, key=lambda c: abs(c.delta))
  return (f"{within} of {len(compared)} cells within 1 std of the published value; "
          f"largest |Δ|: {worst.label} ({worst.delta:+.{worst.digits}f})")


def plot(cells: list[Cell], path: pathlib.Path, title: str, random: bool) -> bool:
  compared = [c for c in cells if c.compared]
  if not compared:
    return False
  plt = report._pyplot()
  fig, ax = plt.subplots(figsize=(5.5, 5.5))
  x = [c.published for c in compared]
  y = [c.mean for c in compared]
  is_random = [any(provenance.is_random(r) for r in c.runs) for c in compared]
  for flag, fmt, name in ((False, "o", "converted weights"), (True, "x", "RANDOM weights")):
    sel = [i for i, f in enumerate(is_random) if f == flag]
    if sel:
      ax.errorbar([x[i] for i in sel], [y[i] for i in sel], fmt=fmt, ms=5, capsize=2,
                  yerr=[compared[i].std for i in sel], label=name)
  lo, hi = min(x + y), max(x + y)
  pad = 0.05 * (hi - lo or 1.0)
  ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
  ax.set_xlabel("published")
  ax.set_ylabel("ours (mean ± std over seeds)")
  ax.set_title(("RANDOM WEIGHTS (machinery only): " if random else "") + title, fontsize=9)
  ax.legend(loc="upper left")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True


def detect(paths) -> str | None:
  """The published table the runs were made for, when every run's config.json names the same
  one (``config.paper_table``, set by the recipes in configs/paper/) and it can be compared."""
  import json
  tables = set()
  for path in report.find_results(paths):
    config = path.parent / "config.json"
    try:
      tables.add(json.loads(config.read_text()).get("paper_table", ""))
    except (OSError, ValueError):
      return None
  table = tables.pop() if len(tables) == 1 else None
  return table if table in CELLS else None


def compare(paths, table: str, out_dir) -> str:
  """Writes ``paper_<table>.md``, ``.csv`` and ``_scatter.png`` to ``out_dir``; returns the
  Markdown."""
  if table not in CELLS:
    raise ValueError(f"--published {table!r}: compared tables are {', '.join(CELLS)}")
  runs = report.load_runs(paths, RUN_METRIC.get(table, "accuracy"))
  cells = CELLS[table](runs)
  info = published.TABLES[table]
  random = any(provenance.is_random(r) for r in runs)
  rows = [row_of(c) for c in cells]
  text = (f"# Ours vs published: {table}\n\nSource: {info.source}. Published backbone: "
          f"{info.backbone}; unit: {info.metric}. Δ = ours − published.\n\n")
  if random:
    text += ("> **RANDOM weights** in the rows marked RANDOM: those numbers measure the "
             "machinery only and say nothing about the paper's claims.\n\n")
  text += report._md_table(HEADER, rows) + f"\n\n{summary(cells)}\n"
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  report._atomic_write(out / f"paper_{table}.md", text)
  with open(out / f"paper_{table}.csv", "w", newline="") as f:
    import csv
    w = csv.writer(f)
    w.writerow(["weights", "cell", "ours_mean", "ours_std", "n", "published", "delta",
                "within_1_std", "note", "provenance"])
    for c, r in zip(cells, rows):
      w.writerow([r[0], c.label, _fmt(c.mean, 4), _fmt(c.std, 4), len(c.ours),
                  "" if c.published is None else c.published, _fmt(c.delta, 4), c.within,
                  c.note, r[5]])
  plot(cells, out / f"paper_{table}_scatter.png", table, random)
  return text
