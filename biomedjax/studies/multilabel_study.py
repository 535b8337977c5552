"""The IU-Xray study's three tables (overall, per label, per domain) from saved test scores.

Sadman et al., BIOKDD'25 (notebook ``evaluatingBiomedClIP_IUXRAY.ipynb``, Nafiz95/BioVLM_Eval_CXR)
report each setting (zero-shot, fine-tuning, linear probe) under two decision rules, and the
tables say which rule produced each number:

  * Table 1 (overall): macro-F1 and exact match under rule A, ``rowminmax@t`` (row min-max scaled
    scores > t; t = 0.5 by default for every setting); LRAP and coverage error on the scores
    (no rule: a per-row increasing map does not change them); the inter/intra class distance
    ratio of the raw test embeddings (first-positive label per image); training time.
    For zero-shot the rule-A threshold sweep 0.20..0.90 (step 0.05) is a table of its own, since
    the paper does not say which t it reported.
  * Table 2 (per-label F1) and Table 3 (per-domain F1, OR over a domain's labels): rule B,
    ``dot>0`` for zero-shot raw dot products and ``logit>0`` for a trained head (the notebook's
    ``(s/||s|| + 1)/2 > 0.5`` and ``sigmoid(logit/80) > 0.5``).
  * Beyond the paper: silhouette (cosine) of the test embeddings and the 5-NN (cosine) accuracy
    of test images against the training embeddings (held out, not the fitted data).

A setting is one ``.npz`` written by ``save_setting`` (test scores and targets; embeddings and
training embeddings optional) with its metadata. CLI::

  python -m biomedjax.studies.multilabel_study RUN_OR_NPZ... --out DIR

writes ``table1_overall``, ``table2_per_label``, ``table3_per_domain``, ``zeroshot_sweep`` and
``separability`` as ``.md`` and ``.csv``, plus ``study.json`` with every number.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import pathlib
import sys
from typing import Sequence

import numpy as np

from biomedjax.evaluation import metrics
from biomedjax.studies import separability

SETTING_FILE = "multilabel_setting.npz"
ZS_SWEEP = tuple(round(0.20 + 0.05 * i, 2) for i in range(15))   # 0.20 .. 0.90
TABLE1_THRESHOLD = 0.5
ZERO_SHOT = "zeroshot"


def save_setting(path, name: str, kind: str, scores, targets, classnames: Sequence[str],
                 domains: dict | None = None, embeddings=None, train_embeddings=None,
                 train_targets=None, minutes: float | None = None) -> pathlib.Path:
  """Writes one setting atomically. ``kind``: "zeroshot" (raw dot products) or "head" (logits)."""
  if kind not in (ZERO_SHOT, "head"):
    raise ValueError(f"kind={kind!r}: 'zeroshot' or 'head'")
  meta = dict(name=name, kind=kind, classnames=list(classnames), domains=domains or {},
              minutes=minutes)
  arrays = dict(scores=np.asarray(scores, np.float32), targets=np.asarray(targets, np.float32),
                meta=np.asarray(json.dumps(meta)))
  for key, value in (("embeddings", embeddings), ("train_embeddings", train_embeddings),
                     ("train_targets", train_targets)):
    if value is not None:
      arrays[key] = np.asarray(value, np.float32)
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp.npz")
  np.savez(tmp, **arrays)
  os.replace(tmp, path)
  return path


def write_run_setting(run, trainable, minutes: float | None) -> pathlib.Path:
  """After a multilabel run (a ``biomedjax.train.run.Run``): the test scores, the tower's test
  and train embeddings (the tuned tower for a method that trains it) and the training time, as
  ``<workdir>/multilabel_setting.npz``. What the scores are (``Method.study_scores``) and the
  setting's name in the tables (``Method.study_name``) are the method's declarations."""
  import jax

  method, data = run.method, run.data
  kind, workdir = method.study_scores, run.workdir
  scores, test_y = run.logits(trainable, "test", progress=False)
  test_x, _ = run.embeddings(trainable, "test")
  train_x, train_y = run.embeddings(trainable, "train")
  from biomedjax.data import iuxray
  domains = ({d: list(v) for d, v in iuxray.DOMAINS.items()}
             if set(iuxray.LABELS) <= set(data.classnames) else None)
  name = method.study_name or method.name
  if jax.tree.leaves(trainable):  # what was evaluated (the best epoch), for Grad-CAM --workdir
    save_trainable(workdir, trainable)
  return save_setting(pathlib.Path(workdir) / SETTING_FILE, name, kind, scores, test_y,
                      data.classnames, domains, embeddings=test_x, train_embeddings=train_x,
                      train_targets=train_y, minutes=minutes)


TRAINABLE_DIR = "trainable"


def save_trainable(workdir, trainable) -> pathlib.Path:
  """The evaluated trainable pytree as an orbax checkpoint ``<workdir>/trainable`` (replaced)."""
  import shutil

  import jax
  import orbax.checkpoint as ocp
  path = (pathlib.Path(workdir) / TRAINABLE_DIR).absolute()
  if path.exists():
    shutil.rmtree(path)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, jax.device_get(trainable))
    ckptr.wait_until_finished()
  return path


def load_trainable(workdir):
  """The trainable saved by ``save_trainable`` (numpy leaves), or None when there is none."""
  import orbax.checkpoint as ocp
  path = (pathlib.Path(workdir) / TRAINABLE_DIR).absolute()
  if not path.is_dir():
    return None
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(path)


def load_setting(path) -> dict:
  path = pathlib.Path(path)
  if path.is_dir():
    path = path / SETTING_FILE
  try:
    with np.load(path) as f:
      data = {k: f[k] for k in f.files}
    meta = json.loads(str(data.pop("meta")))
  except (OSError, KeyError, ValueError) as e:
    raise ValueError(f"{path}: not a setting file written by save_setting ({e})") from e
  return {**meta, **data, "source": str(path)}


def rule_b(kind: str) -> str:
  return "dot>0" if kind == ZERO_SHOT else "logit>0"


def evaluate_setting(s: dict, threshold: float = TABLE1_THRESHOLD, knn_k: int = 5) -> dict:
  """All numbers of one setting (a ``load_setting`` dict), each with the rule behind it."""
  names, domains = s["classnames"], s.get("domains") or {}
  rule_a = f"rowminmax@{threshold}"
  a = metrics.multilabel_report(s["scores"], s["targets"], names, rule=rule_a)
  b = metrics.multilabel_report(s["scores"], s["targets"], names, rule=rule_b(s["kind"]),
                                domains=domains)
  out = dict(name=s["name"], kind=s["kind"], minutes=s.get("minutes"), rule_a=rule_a,
             rule_b=b["rule"], table1=dict(macro_f1=a["macro_f1"], exact_match=a["exact_match"],
                                           lrap=a["lrap"], coverage_error=a["coverage_error"],
                                           ranking_loss=a["ranking_loss"]),
             per_label_f1={n: b["per_label"][n]["f1"] for n in names},
             per_domain_f1={d: v["f1"] for d, v in b["per_domain"].items()},
             report_rule_a=a, report_rule_b=b)
  if s["kind"] == ZERO_SHOT:
    out["sweep"] = []
    for t in ZS_SWEEP:
      r = metrics.multilabel_report(s["scores"], s["targets"], names, rule=f"rowminmax@{t}")
      out["sweep"].append(dict(threshold=t, macro_f1=r["macro_f1"], exact_match=r["exact_match"]))
  if "embeddings" in s:
    out["separability"] = separability.separability_report(
        s["embeddings"], s["targets"], s.get("train_embeddings"), s.get("train_targets"), knn_k)
  return out


def record(path) -> dict:
  """One setting's study numbers (``evaluate_setting`` without its two full metric reports), as
  a run writes them into results.json's ``multilabel_study``: what ``python -m biomedjax.report
  --published iuxray_table1|2|3`` compares with the paper (biomedjax/published/compare.py)."""
  out = evaluate_setting(load_setting(path))
  return {k: v for k, v in out.items() if not k.startswith("report_rule_")}


def _fmt(x, digits=3) -> str:
  if x is None:
    return "—"
  return f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> tuple[str, str]:
  md = ["| " + " | ".join(header) + " |", "|:--|" + "--:|" * (len(header) - 1)]
  md += ["| " + " | ".join(r) + " |" for r in rows]
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(header)
  w.writerows(rows)
  return "\n".join(md) + "\n", buf.getvalue()


def tables(results: list[dict]) -> dict[str, tuple[str, str]]:
  """name -> (markdown, csv) of each table; rows in the order of ``results``."""
  out = {}
  rows = []
  for r in results:
    sep, t1 = r.get("separability", {}), r["table1"]
    rows.append([r["name"], _fmt(sep.get("inter")), _fmt(sep.get("intra")),
                 _fmt(sep.get("ratio")), _fmt(t1["macro_f1"]), _fmt(t1["exact_match"]),
                 _fmt(t1["lrap"]), _fmt(t1["coverage_error"]), _fmt(r.get("minutes"), 2),
                 r["rule_a"]])
  out["table1_overall"] = _table(["setting", "inter", "intra", "ratio", "F1", "exact match",
                                  "LRAP", "coverage", "time (min)", "F1/EM rule"], rows)
  names = list(results[0]["per_label_f1"]) if results else []
  out["table2_per_label"] = _table(
      ["setting"] + names + ["rule"],
      [[r["name"]] + [_fmt(r["per_label_f1"][n]) for n in names] + [r["rule_b"]]
       for r in results])
  domains = list(results[0]["per_domain_f1"]) if results else []
  out["table3_per_domain"] = _table(
      ["setting"] + domains + ["rule"],
      [[r["name"]] + [_fmt(r["per_domain_f1"][d]) for d in domains] + [r["rule_b"]]
       for r in results])
  sweep_rows = [[r["name"], _fmt(p["threshold"], 2), _fmt(p["macro_f1"]), _fmt(p["exact_match"])]
                for r in results for p in r.get("sweep", [])]
  out["zeroshot_sweep"] = _table(["setting", "t (rowminmax@t)", "macro-F1", "exact match"],
                                 sweep_rows)
  knn_key = next((k for r in results for k in r.get("separability", {}) if k.startswith("knn")),
                 None)
  out["separability"] = _table(
      ["setting", "inter/intra", "silhouette (cosine)", "k-NN held-out acc."],
      [[r["name"], _fmt(r["separability"]["ratio"]),
        _fmt(r["separability"]["silhouette_cosine"]),
        _fmt(r["separability"].get(knn_key) if knn_key else None)]
       for r in results if "separability" in r])
  return out


def _atomic_write(path: pathlib.Path, text: str) -> None:
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


def write_study(sources: Sequence, out_dir, threshold: float = TABLE1_THRESHOLD) -> list[dict]:
  """Evaluates every setting file (or run directory holding one) and writes the tables."""
  settings = [load_setting(p) for p in sources]
  if not settings:
    raise ValueError("no settings given")
  first = settings[0]["classnames"]
  for s in settings[1:]:
    if s["classnames"] != first:
      raise ValueError(f"{s['source']}: label order {s['classnames']} differs from "
                       f"{settings[0]['source']}: {first}")
  results = [evaluate_setting(s, threshold) for s in settings]
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  for name, (md, csv_text) in tables(results).items():
    _atomic_write(out_dir / f"{name}.md", md)
    _atomic_write(out_dir / f"{name}.csv", csv_text)
  _atomic_write(out_dir / "study.json", json.dumps(results, indent=2, allow_nan=False))
  return results


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m biomedjax.studies.multilabel_study",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("settings", nargs="+", help=f"{SETTING_FILE} files or run directories")
  p.add_argument("--out", required=True)
  p.add_argument("--threshold", type=float, default=TABLE1_THRESHOLD,
                 help="rule A threshold t of Table 1 (default 0.5)")
  args = p.parse_args(argv)
  try:
    write_study(args.settings, args.out, args.threshold)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.out}/table1_overall.md, table2_per_label.md, table3_per_domain.md, ...")
  return 0


if __name__ == "__main__":
  sys.exit(main())
