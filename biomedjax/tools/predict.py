"""Classify image files with a trained run: one CSV row per image.

  python -m biomedjax.tools.predict --workdir RUN --images DIR_OR_CSV --out preds.csv [--labels SPLIT]
  python -m biomedjax.tools.predict --state method.safetensors --images scans/ --out preds.csv

``--images``: a folder (every image file below it, sorted, paths relative to it) or a CSV with a
``path`` column (relative to the CSV's folder, or absolute). The CSV written has ``path``,
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


def predict(state_path, images, out, labels=None, batch_size: int = 32, backbone_dir=None,
            progress: bool = True) -> dict:
  """Writes the CSV; returns ``{"n": images, "accuracy": float | None}``."""
  clf = trained.TrainedClassifier.load(state_path, backbone_dir)
  root, rel = list_images(images)
  probs = clf.predict_files([root / p for p in rel], batch_size, progress)
  truth = read_labels(labels) if labels else {}
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
  ap.add_argument("--images", required=True, help="folder of images, or CSV with a path column")
  ap.add_argument("--out", required=True, help="CSV to write")
  ap.add_argument("--labels", help="split file with the true classes (adds accuracy)")
  ap.add_argument("--backbone", help="converted backbone dir, if it moved since training")
  ap.add_argument("--batch-size", type=int, default=32)
  ap.add_argument("--debug", action="store_true", help="full tracebacks")
  args = ap.parse_args(argv)
  state = args.state or pathlib.Path(args.workdir) / trained.STATE_FILE

  def run():
    r = predict(state, args.images, args.out, args.labels, args.batch_size, args.backbone)
    acc = "" if r["accuracy"] is None else (f"; accuracy {100 * r['accuracy']:.2f}% on "
                                            f"{r['labelled']} labelled")
    print(f"wrote {args.out}: {r['n']} images{acc}")
    return 0

  return cli_lib.run_guarded(run, sys.argv if argv is None else ["", *argv])


def cli() -> None:
  """Console script ``biomedjax-predict``."""
  sys.exit(main())


if __name__ == "__main__":
  cli()
