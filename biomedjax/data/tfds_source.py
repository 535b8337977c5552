"""tensorflow-datasets as a second source of the natural-image benchmarks (``data.source="tfds"``).

  python launch.py --config configs/attrvr.py:dataset=caltech101,shots=16,seed=1 \
      --config.data.source=tfds --config.data.tfds_data_dir=~/tensorflow_datasets ...

Reads the user's prepared tfds data (``tfds.builder(name, data_dir=...)``, ArrayRecord files read
through ``as_data_source``: no TensorFlow needed; images are handed on still encoded) and maps
tfds's labels to the reference's class names and label order (CoOp's, as the released attribute
files key them), by the rules of the reference loaders (JXLiu-AI/BioMedVR ``datasets/*.py``):

* caltech101: ``BACKGROUND_Google`` and ``Faces_easy`` dropped (their images too), ``airplanes,
  Faces, Leopards, Motorbikes -> airplane, face, leopard, motorbike`` (caltech101.py:9-16), label
  order = the case-sensitive sort of the original folders (dtd.py ``read_and_split_data``), so
  face, leopard, motorbike come first; tfds lower-cases the folder names.
* eurosat: ``NEW_CNAMES`` of eurosat.py (``AnnualCrop -> Annual Crop Land``, ...).
* oxford_pets: the breed in lower case (oxford_pets.py ``read_data``), tfds's label order.
* dtd, food101: the folder names in sorted order (dtd.py ``read_and_split_data``); tfds's
  food101 order differs (``cheesecake`` before ``cheese_plate``).
* oxford_flowers: tfds's order (= ``imagelabels.mat``'s) and names, except tfds's
  ``pink-yellow dahlia?`` (``cat_to_name.json``: ``pink-yellow dahlia``).

THE SPLIT IS TFDS'S, NOT THE PAPER'S: CoOp's ``split_zhou_*.json`` partition differs, so the
numbers are not comparable with the paper's. Every run says so in results.json
(``data_source``) and in the report. Train and test (and val where tfds has one) are the tfds
splits of ``TFDS_SPLITS``; EuroSAT has only "train" in tfds and is cut 80/20 by tfds's slicing.
Few-shot sampling is the reference's (``fewshot.fewshot_splits``) over the train split.
"""

from __future__ import annotations

import io
import pathlib

import numpy as np

from biomedjax.data import fewshot
from biomedjax.data.splits import Item

# our key -> tfds builder name
TFDS_NAMES = {"caltech101": "caltech101", "food101": "food101", "dtd": "dtd",
              "eurosat": "eurosat/rgb", "oxford_pets": "oxford_iiit_pet",
              "oxford_flowers": "oxford_flowers102"}
# our split -> tfds split
TFDS_SPLITS = {
    "caltech101": {"train": "train", "test": "test"},
    "food101": {"train": "train", "test": "validation"},
    "dtd": {"train": "train", "val": "validation", "test": "test"},
    "eurosat": {"train": "train[:80%]", "test": "train[80%:]"},
    "oxford_pets": {"train": "train", "test": "test"},
    "oxford_flowers": {"train": "train", "val": "validation", "test": "test"},
}
FLOWERS_RENAMES = {"pink-yellow dahlia?": "pink-yellow dahlia"}
CALTECH_IGNORED = ("background_google", "faces_easy")
CALTECH_RENAMES = {"airplanes": "airplane", "faces": "face", "leopards": "leopard",
                   "motorbikes": "motorbike"}
CALTECH_CAPITALISED = ("faces", "leopards", "motorbikes")  # sort before lower case (ASCII)
EUROSAT_RENAMES = {"AnnualCrop": "Annual Crop Land", "Forest": "Forest",
                   "HerbaceousVegetation": "Herbaceous Vegetation Land",
                   "Highway": "Highway or Road", "Industrial": "Industrial Buildings",
                   "Pasture": "Pasture Land", "PermanentCrop": "Permanent Crop Land",
                   "Residential": "Residential Buildings", "River": "River",
                   "SeaLake": "Sea or Lake"}


def reference_classes(dataset: str, tfds_names) -> tuple[list[str], dict[int, int]]:
  """(reference class names in label order, {tfds label: reference label}); tfds labels absent
  from the map (Caltech's background and easy faces) are dropped."""
  names = list(tfds_names)
  if dataset == "caltech101":
    kept = [n for n in names if n not in CALTECH_IGNORED]
    kept.sort(key=lambda n: (n not in CALTECH_CAPITALISED, n))
    ref = [CALTECH_RENAMES.get(n, n) for n in kept]
    return ref, {names.index(n): i for i, n in enumerate(kept)}
  if dataset in ("dtd", "food101"):
    ref = sorted(names)
    return ref, {names.index(n): i for i, n in enumerate(ref)}
  if dataset == "eurosat":
    ref = [EUROSAT_RENAMES[n] for n in names]
  elif dataset == "oxford_pets":
    ref = [n.lower() for n in names]
  else:
    ref = [FLOWERS_RENAMES.get(n, n) for n in names]
  return ref, {i: i for i in range(len(names))}


def _encoded(image) -> bytes:
  """Encoded image bytes as the pipeline decodes them (a decoded array is written as PNG)."""
  if isinstance(image, (bytes, np.bytes_)):
    return bytes(image)
  from PIL import Image
  buf = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(buf, "PNG")
  return buf.getvalue()


class TfdsSplitSource:
  """Records of one tfds split, relabelled; ``items`` select (and order) them: path = index."""

  def __init__(self, source, name: str, items, classnames):
    self.source, self.name, self.items = source, name, list(items)
    self.classnames = classnames

  def __len__(self):
    return len(self.items)

  def __getitem__(self, index):
    item = self.items[index]
    record = self.source[int(item.path.rsplit("[", 1)[1][:-1])]
    return {"image": _encoded(record["image"]), "label": int(item.label), "path": item.path}


def _open(builder, split: str):
  """The split's data source, images left encoded where tfds can (no decode-and-re-encode)."""
  import tensorflow_datasets as tfds
  try:
    source = builder.as_data_source(split=split,
                                    decoders={"image": tfds.decode.SkipDecoding()})
    if len(source):
      source[0]  # noqa: B018  (some versions and mock data need TensorFlow for this)
    return source
  except (TypeError, ImportError):
    return builder.as_data_source(split=split)


def build_data(data_cfg, seed: int, workdir: pathlib.Path):
  """A ``setup.RunData`` from the prepared tfds data (see the module doc)."""
  import tensorflow_datasets as tfds

  from biomedjax.train.setup import RunData
  dataset = data_cfg.dataset.lower()
  if data_cfg.source != "tfds":
    raise ValueError(f"config.data.source={data_cfg.source!r}: use 'files' or 'tfds'")
  if dataset not in TFDS_NAMES:
    raise ValueError(f"config.data.source='tfds' reads {sorted(TFDS_NAMES)}; "
                     f"config.data.dataset={data_cfg.dataset!r} is not one of them")
  if data_cfg.setting != "few_shot":
    raise ValueError("config.data.source='tfds': only setting='few_shot'")
  name = TFDS_NAMES[dataset]
  builder = tfds.builder(name, data_dir=data_cfg.tfds_data_dir or None)
  tfds_names = builder.info.features["label"].names
  classnames, label_map = reference_classes(dataset, tfds_names)
  sources, items = {}, {}
  for split, tfds_split in TFDS_SPLITS[dataset].items():
    sources[split] = _open(builder, tfds_split)
    labels = [int(sources[split][i]["label"]) for i in range(len(sources[split]))]
    items[split] = [Item(f"{tfds_split}[{i}]", label_map[y], classnames[label_map[y]])
                    for i, y in enumerate(labels) if y in label_map]
  split_seed = data_cfg.get("split_seed", 0) or seed
  if data_cfg.shots > 0:
    items = fewshot.fewshot_splits(items, data_cfg.shots, split_seed)
  import jax
  if jax.process_index() == 0:
    fewshot.write_selection(workdir / "fewshot_selection.json", items, shots=data_cfg.shots,
                            seed=split_seed, split_file=f"tfds:{name}")
  splits = {k: TfdsSplitSource(sources[k], name, v, classnames) for k, v in items.items() if v}
  source = {"kind": "tfds", "tfds_name": name, "version": str(builder.info.version),
            "splits": dict(TFDS_SPLITS[dataset]),
            "note": f"tensorflow-datasets' {name} split, NOT the paper's (CoOp) split"}
  return RunData(classnames=tuple(classnames), splits=splits, split_file=f"tfds:{name}",
                 source=source)


def report_note(runs) -> str:
  """A warning line for a report whose runs include tfds-split runs ("" otherwise)."""
  tfds_runs = sorted({(r["dataset"], r["data_source"]["tfds_name"]) for r in runs
                      if (r.get("data_source") or {}).get("kind") == "tfds"})
  if not tfds_runs:
    return ""
  listed = ", ".join(f"{d} (tfds {n})" for d, n in tfds_runs)
  return (f"\n> **Split: tensorflow-datasets', not the paper's** for {listed}: their numbers "
          "are not comparable with the paper's CoOp-split results.\n")
