"""``launch.py --sweep=plan``: one screen before a sweep runs, and a status a script can stop on.

It says, without running anything:

* how many runs each method has and in total, and how many are finished in the workdir
  (a point's ``results.json`` exists);
* what is missing: each dataset folder or split file not found under ``root`` (and a split file
  whose sha256 is not the published one), the converted weights, the prompt-ensemble file
  (BiomedCoOp), the attribute files (AttrVR, BioMedVR); random weights are said, not missing;
* the cells of a paper recipe biomedjax cannot run yet, and why (``unrunnable`` of the recipe);
* the compute: train steps per run (epochs x steps per epoch, from K, the classes and the batch)
  times the seconds per step measured on finished runs in this workdir (``config.json`` to
  ``results.json``), or "unknown" where no run of the method has finished here;
* which points ``--sweep=packed`` runs together: the seeds of a fit-only setting
  (``train/fit_pack.py``) and train-stage points sharing a data stream (``train/packed.py``).

``plan`` returns the text and whether everything required is present; launch.py exits 1 when
it is not, so a cluster script can stop before queueing hundreds of runs.
"""

from __future__ import annotations

import collections
import math
import pathlib

from biomedjax import published
from biomedjax.tools import provenance
from biomedjax.data import catalog, epoch_batches

PRESENT, MISSING = "present", "MISSING"


def _check(found: dict, what: str, path, required: bool = True, note: str = "") -> None:
  path = pathlib.Path(path)
  ok = path.exists()
  status = PRESENT if ok else (MISSING if required else "absent (optional)")
  found[(what, str(path))] = (status, note if ok else "")


def _split_note(path: pathlib.Path) -> str:
  expected = published.SPLIT_SHA256.get(path.name)
  if expected is None or not path.is_file():
    return ""
  digest = provenance.sha256(path)
  return "" if digest == expected else (f"sha256 {digest[:12]} is not the published split's "
                                        f"{expected[:12]}: numbers will not be comparable")


def requirements(config, found: dict) -> None:
  """Adds the files ``config`` needs to ``found``: (what, path) -> (status, note)."""
  d = config.data
  if d.get("prepared"):
    _check(found, "prepared data", d.prepared)
  elif d.get("layout") == "calibprompt":
    _check(found, f"dataset {d.dataset}", pathlib.Path(d.root) / d.dataset / "images")
    _check(found, f"dataset {d.dataset} class names",
           pathlib.Path(d.root) / d.dataset / "classnames.txt")
  elif d.get("split_file"):
    _check(found, f"split file ({d.dataset})", d.split_file)
    _check(found, f"images ({d.dataset})", d.image_root or d.root)
  elif d.dataset == "iuxray":
    labels = d.iuxray.labels_csv or pathlib.Path(d.root) / "iuxray_frontal_14labels.csv"
    _check(found, "dataset iuxray (projections)", pathlib.Path(d.root) / "indiana_projections.csv")
    _check(found, "dataset iuxray (images)", pathlib.Path(d.root) / "images")
    _check(found, "dataset iuxray (labels)", labels)
  elif d.dataset.lower() in catalog.DATASETS:
    info = catalog.get(d.dataset)
    split = info.split_file(d.root)
    _check(found, f"dataset {d.dataset} (images)", info.image_root(d.root))
    _check(found, f"dataset {d.dataset} (split file)", split, note=_split_note(split))
  if config.model.init:
    _check(found, "converted weights", pathlib.Path(config.model.init) / provenance.MANIFEST_FILE)
  else:
    found[("backbone", f"RANDOM {config.model.preset}")] = (
        "random weights", "no model=: numbers measure the machinery only")
  name = config.method.name
  if name == "biomedcoop" or config.method.get("ensemble", False):
    if d.llm_prompts:
      _check(found, "prompt-ensemble file", d.llm_prompts)
    else:
      found[("prompt-ensemble file", "(not given: prompts=<file>)")] = (MISSING, "")
  if name in ("attrvr", "biomedvr"):
    heads = ("des", "dist", "confuse") if name == "biomedvr" else ("des", "dist")
    directory = config.method.get("attributes_dir", "")
    if not directory:
      found[("attribute files", "(not given: attributes=<folder>)")] = (MISSING, "")
    for head in heads if directory else ():
      _check(found, "attribute file",
             pathlib.Path(directory) / f"{config.method.attributes_dataset}_{head}.json")


def train_steps(config) -> int | None:
  """Gradient steps of one run, or None when not known before the data is read (K = 0)."""
  from biomedjax.methods import METHODS
  cls = METHODS.get(config.method.name)
  if cls is not None and "train" not in tuple(cls.stages):
    return 0
  d = config.data
  if d.shots <= 0 or d.dataset.lower() not in catalog.DATASETS:
    return None
  classes = catalog.get(d.dataset).num_classes
  if d.setting == "base2novel":
    classes = math.ceil(classes / 2)
  n = d.shots * classes
  batch = min(d.batch_size, n)
  per_epoch = epoch_batches.steps_per_epoch(n, batch, d.get("last_batch", "drop"))
  return per_epoch * config.optim.epochs


def measured_step_seconds(points) -> dict[str, float]:
  """Method -> seconds per train step, from the finished runs in the workdir."""
  per = collections.defaultdict(list)
  for p in points:
    start, end = p.workdir / "config.json", p.workdir / "results.json"
    if not (start.is_file() and end.is_file()):
      continue
    steps = train_steps(p.config)
    if steps:
      per[p.config.method.name].append((end.stat().st_mtime - start.stat().st_mtime) / steps)
  return {m: sum(v) / len(v) for m, v in per.items()}


def packs(points) -> tuple[int, int, int]:
  """(fit packs, train packs of more than one point, points run alone) under --sweep=packed."""
  from biomedjax.train import fit_pack, packed
  settings = collections.defaultdict(list)
  for p in points:
    settings[fit_pack.setting_key(p.config)].append(p)
  fit_packs, rest = 0, []
  for group in settings.values():
    if fit_pack.packable([p.config for p in group]):
      fit_packs += 1
    else:
      rest += group
  streams = collections.Counter(packed.stream_key(p.config) for p in rest)
  train_packs = sum(1 for n in streams.values() if n > 1)
  alone = sum(1 for n in streams.values() if n == 1)
  return fit_packs, train_packs, alone


def _label(p) -> str:
  c = p.config
  return c.method.name + (f" [{c.variant}]" if c.get("variant", "") else "")


def plan(points, unrunnable=(), title: str = "") -> tuple[str, bool]:
  """The plan's text and whether every required file is present."""
  lines = [f"# Plan: {title}" if title else "# Plan"]
  per_method = collections.defaultdict(lambda: [0, 0])
  found: dict = {}
  for p in points:
    per_method[_label(p)][0] += 1
    per_method[_label(p)][1] += p.finished
    if not p.finished:
      requirements(p.config, found)
  done = sum(p.finished for p in points)
  lines.append(f"\nruns: {len(points)} runnable, {done} finished, {len(points) - done} to run"
               + (f"; {len(unrunnable)} cannot run yet" if unrunnable else ""))
  width = max([len(m) for m in per_method] + [6])
  for m, (n, f) in per_method.items():
    lines.append(f"  {m:<{width}}  {n:>5} runs  {f:>5} finished")
  missing = [(k, v) for k, v in found.items() if v[0] == MISSING]
  lines.append(f"\nneeded by the unfinished runs: {len(found)} item(s), {len(missing)} missing")
  for (what, path), (status, note) in sorted(found.items(), key=lambda kv: kv[1][0] != MISSING):
    lines.append(f"  {status:<8} {what}: {path}" + (f"  ({note})" if note else ""))
  if unrunnable:
    lines.append(f"\ncannot run yet ({len(unrunnable)} runs):")
    for point, why in unrunnable:
      lines.append(f"  {point}: cannot run yet: {why}")
  todo = [p for p in points if not p.finished]
  lines.append("\ncompute of the runs to do (train steps x measured s/step):")
  seconds = measured_step_seconds(points)
  total, unknown = 0.0, set()
  by_method = collections.defaultdict(int)
  for p in todo:
    steps = train_steps(p.config)
    if steps is None:
      unknown.add(_label(p))
      continue
    by_method[p.config.method.name] += steps
  for m, steps in by_method.items():
    per = seconds.get(m)
    est = "unknown (no finished run here to time)" if per is None and steps else (
        "fit only" if not steps else f"~{steps * per / 3600:.2f} h at {per:.3f} s/step")
    if per is not None:
      total += steps * per
    elif steps:
      unknown.add(m)
    lines.append(f"  {m}: {steps} steps, {est}")
  lines.append(f"  total: ~{total / 3600:.2f} h measured" +
               (f" + unknown for {', '.join(sorted(unknown))}" if unknown else ""))
  if todo:
    fit_packs, train_packs, alone = packs(todo)
    lines.append(f"\n--sweep=packed: {fit_packs} fit pack(s) (a setting's seeds as one "
                 f"computation), {train_packs} train pack(s) of points sharing a data stream, "
                 f"{alone} point(s) one by one")
  ok = not missing
  lines.append("\nstatus: " + ("ready" if ok else f"{len(missing)} required item(s) missing"))
  return "\n".join(lines), ok
