"""Classify image files with a trained run: one CSV row per image.

  python -m biomedjax.tools.predict --workdir RUN --split test --out preds.csv   # check a run
  python -m biomedjax.tools.predict --workdir RUN --images DIR_OR_CSV --out preds.csv [--labels SPLIT]
  python -m biomedjax.tools.predict --state method.safetensors --images scans/ --out preds.csv

``--split test`` (or ``val``): the run's own split of its own split file and image root (from
the workdir's config.json; ``--labels``/``--image-root`` override them), without the images
the run skipped: its accuracy is the run's results.json accuracy for that split, in one command.
``--images``: a folder (every image file below it, sorted, paths relative to it) or a CSV with a
``path`` column; a relative path in the CSV is relative to the CSV's own folder (not to the
current one), an absolute path is used as is. The CSV written has ``path``,
``prediction`` (a class name), then ``p_<class>`` per class in the run's class order (softmax
probabilities). ``--labels`` (a split file, paths relative to the same folder) adds ``label``
and ``correct`` columns and prints the accuracy over the labelled images.

The images go through the run's eval preprocessing and the method's own logits, so predicting
a run's test images reproduces its ``results.json`` test accuracy.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys

import numpy as np

from biomedjax.tools import trained
from biomedjax.data import splits as splits_lib


def list_images(spec) -> tuple[pathlib.Path, list[str]]:
  """(root, relative paths) of a folder's image files or of a CSV's ``path`` column."""
  spec = pathlib.Path(spec)
  if spec.is_dir():
    rel = sorted(str(p.relative_to(spec)) for p in spec.rglob("*")
                 if p.is_file() and p.suffix.lower() in splits_lib.IMAGE_EXTENSIONS
                 and not any(part.startswith(".") for part in p.relative_to(spec).parts))
    if not rel:
      raise FileNotFoundError(f"{spec}: no image files ({', '.join(splits_lib.IMAGE_EXTENSIONS)})")
    return spec, rel
  if spec.is_file() and spec.suffix.lower() == ".csv":
    with open(spec, newline="") as f:
      rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0]:
      raise ValueError(f"{spec}: a CSV of images needs a 'path' column")
    return spec.parent, [r["path"] for r in rows]
  raise FileNotFoundError(f"{spec}: neither a folder of images nor a .csv with a 'path' column")


def read_labels(split_file) -> dict[str, str]:
  """relative path -> class name, over every split of a split file."""
  items = splits_lib.read_split_file(split_file)
  return {it.path: it.classname for v in items.values() for it in v}


def label_of(path: str, truth: dict[str, str]) -> str:
  """The class of ``path`` in ``truth``: the path as written, else its longest trailing part
  that the split file lists (so absolute paths in a CSV match the split file's relative ones)."""
  if path in truth:
    return truth[path]
  parts = pathlib.PurePath(path).parts
  for k in range(len(parts) - 1, 0, -1):
    hit = truth.get("/".join(parts[-k:]))
    if hit is not None:
      return hit
  return ""


def run_split(workdir, split: str, split_file=None, image_root=None
              ) -> tuple[pathlib.Path, list[str], dict[str, str]]:
  """(image root, relative paths, {path: class}) of a finished run's ``split``: the split file
  and image root of its config.json (a catalog data set's layout under ``data.root``), less the
  images the run skipped (results.json ``skipped_images``)."""
  import json
  from biomedjax.data import catalog
  workdir = pathlib.Path(workdir)
  config_file = workdir / "config.json"
  if not config_file.is_file():
    raise FileNotFoundError(f"{config_file}: missing; --workdir must be a run's folder")
  data = json.loads(config_file.read_text())["data"]
  if data.get("setting", "few_shot") != "few_shot" or data.get("prepared") or data.get("layout"):
    raise ValueError(f"{workdir}: --split reads few-shot runs on split files; for this run pass "
                     "--images and --labels")
  results_file = workdir / "results.json"
  results = json.loads(results_file.read_text()) if results_file.is_file() else {}
  recorded = results.get("data_paths", {})  # absolute: the run's folder may not be this one
  info = catalog.DATASETS.get(str(data["dataset"]).lower())

  def path(key, default):
    given = data.get(key)
    if given and not pathlib.Path(given).exists() and recorded.get(key):
      return recorded[key]
    return given or default
  split_file = split_file or path("split_file", info and info.split_file(data["root"]))
  image_root = image_root or path("image_root", info and info.image_root(data["root"]))
  if not split_file or not image_root:
    raise ValueError(f"{config_file}: no split file and image root recorded; pass --labels "
                     "SPLIT_FILE and --image-root DIR")
  if not pathlib.Path(split_file).is_file():
    raise FileNotFoundError(f"{split_file}: the run's split file is not there from this folder; "
                            "run predict from the folder the run was launched in, or pass "
                            "--labels SPLIT_FILE --image-root DIR")
  items = splits_lib.read_split_file(split_file).get(split, [])
  if not items:
    raise ValueError(f"{split_file}: no {split!r} split")
  skipped = {str(pathlib.Path(r["path"]).resolve()) for r in results.get("skipped_images", [])}
  root = pathlib.Path(image_root)
  kept = [it for it in items if str((root / it.path).resolve()) not in skipped]
  return root, [it.path for it in kept], {it.path: it.classname for it in kept}


def predict(state_path, images, out, labels=None, batch_size: int = 32, backbone_dir=None,
            progress: bool = True) -> dict:
  """Writes the CSV; returns ``{"n": images, "accuracy": float | None}``. ``images``: a folder
  or CSV (``list_images``), or ``(root, relative paths, {path: class})`` (``run_split``)."""
  clf = trained.TrainedClassifier.load(state_path, backbone_dir)
  if isinstance(images, tuple):
    root, rel, truth = images
    labels = labels or "the run's split"
  else:
    root, rel = list_images(images)
    truth = read_labels(labels) if labels else {}
  probs = clf.predict_files([root / p for p in rel], batch_size, progress)
  names = clf.classnames
  out = pathlib.Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  correct = []
  with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["path", "prediction", *[f"p_{c}" for c in names],
                *(["label", "correct"] if labels else [])])
    for p, row in zip(rel, probs):
      pred = names[int(np.argmax(row))]
      extra = []
      if labels:
        label = label_of(p, truth)
        extra = [label, "" if not label else int(label == pred)]
        if label:
          correct.append(label == pred)
      w.writerow([p, pred, *[f"{v:.6f}" for v in row], *extra])
  acc = float(np.mean(correct)) if correct else None
  return {"n": len(rel), "accuracy": acc, "labelled": len(correct)}


def main(argv=None) -> int:
  from biomedjax.tools import cli as cli_lib
  ap = argparse.ArgumentParser(prog="python -m biomedjax.tools.predict",
                               description=__doc__.split("\n")[0])
  src = ap.add_mutually_exclusive_group(required=True)
  src.add_argument("--workdir", help="a finished run's workdir")
  src.add_argument("--state", help="an exported .safetensors file (python -m biomedjax.tools.export)")
  what = ap.add_mutually_exclusive_group(required=True)
  what.add_argument("--split", choices=("test", "val"),
                    help="the run's own split (its split file and image root; needs --workdir): "
                    "reproduces its results.json accuracy")
  what.add_argument("--images", help="folder of images, or CSV with a path column (relative "
                    "paths in the CSV are relative to the CSV's folder)")
  ap.add_argument("--out", required=True, help="CSV to write")
  ap.add_argument("--labels", help="split file with the true classes (adds accuracy); with "
                  "--split: instead of the run's")
  ap.add_argument("--image-root", help="with --split: the folder the split file's paths are "
                  "relative to, instead of the run's")
  ap.add_argument("--backbone", help="converted backbone dir, if it moved since training")
  ap.add_argument("--batch-size", type=int, default=32)
  ap.add_argument("--debug", action="store_true", help="full tracebacks")
  args = ap.parse_args(argv)
  state = args.state or pathlib.Path(args.workdir) / trained.STATE_FILE

  if args.split and not args.workdir:
    ap.error("--split needs --workdir (the run whose split it is)")

  def run():
    images = args.images
    if args.split:
      images = run_split(args.workdir, args.split, args.labels, args.image_root)
    r = predict(state, images, args.out, None if args.split else args.labels, args.batch_size,
                args.backbone)
    acc = "" if r["accuracy"] is None else (f"; accuracy {100 * r['accuracy']:.2f}% on "
                                            f"{r['labelled']} labelled")
    print(f"wrote {args.out}: {r['n']} images{acc}")
    return 0

  return cli_lib.run_guarded(run, sys.argv if argv is None else ["", *argv],
                             hints=cli_lib.PREDICT_HINTS)


def cli() -> None:
  """Console script ``biomedjax-predict``."""
  sys.exit(main())


if __name__ == "__main__":
  cli()
