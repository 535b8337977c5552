"""The natural-image benchmarks of BioMedVR/AttrVR (CoOp's layout and ``split_zhou_*.json`` files).

Reference: JXLiu-AI/BioMedVR ``datasets/<name>.py`` (copies of CoOp's loaders). Each dataset lives
at ``<root>/<dir_name>/`` with its split file there and the images under ``<image_dir>``; the
split file's paths are relative to the image folder (``OxfordPets.read_split(split_path,
image_dir)``), except Stanford Cars whose paths are relative to the dataset folder
(``stanford_cars.py:21``: ``read_split(self.split_path, self.dataset_dir)``).

Class names are the split file's (``DatasetBase.get_lab2cname`` over train, ``datasets/utils.py``),
as the reference reads them: CoOp's renames are already in the published files (Caltech101's
``airplanes -> airplane``, ``Faces -> face``; EuroSAT's ``AnnualCrop -> Annual Crop Land``; the
UCF101 ``Apply_Eye_Makeup`` spelling; ...). ``num_classes`` is checked against the file.
The catalog key is the reference's ``--dataset`` spelling, which is also the key of the released
``<key>_{des,dist}.json`` attribute files.

FGVC-Aircraft (key ``fgvc``, the reference's ``--dataset`` spelling and attribute-file key) has
no split file: CoOp's lists (``fgvc_aircraft.py``) are read as the reference reads them
(``AircraftInfo``). Not provided: ImageNet (``datasets/__init__.py`` imports an ``imagenet.py``
that the repository does not contain: there is no reference loader to follow).

No natural dataset has a ``<key>_confuse.json``: the reference's BioMedVR then runs with the
negative expert's logits set to zero (``experiments/biomedvr.py:146-151,190-196``), which
``configs/biomedvr.py`` reproduces with ``method.negative="zeros"`` for these datasets.
"""

from __future__ import annotations

import dataclasses
import pathlib

from biomedjax.data import catalog
from biomedjax.data import splits as splits_lib


@dataclasses.dataclass(frozen=True)
class NaturalInfo(catalog.DatasetInfo):
  image_dir: str = ""          # under <root>/<dir_name>/ ("" = the dataset folder itself)
  num_classes_expected: int = 0

  @property
  def num_classes(self) -> int:
    return self.num_classes_expected

  def image_root(self, root) -> pathlib.Path:
    base = pathlib.Path(root) / self.dir_name
    return base / self.image_dir if self.image_dir else base


@dataclasses.dataclass(frozen=True)
class AircraftInfo(NaturalInfo):
  """FGVC-Aircraft in CoOp's layout (JXLiu-AI/BioMedVR ``datasets/fgvc_aircraft.py:15-29,50-65``):
  ``<root>/fgvc_aircraft/variants.txt`` names the classes in label order, and
  ``images_variant_{train,val,test}.txt`` hold ``<image id> <variant words...>`` per line, the
  image at ``images/<image id>.jpg``. ``split_file`` is ``variants.txt`` (what ``--sweep=plan``
  looks for); each run writes the lists as a split file into its workdir (``run_split_file``)."""

  def run_split_file(self, root, workdir) -> pathlib.Path:
    folder = pathlib.Path(root) / self.dir_name
    variants = self.split_file(root)
    if not variants.is_file():
      raise FileNotFoundError(f"{variants} not found: FGVC-Aircraft is read from CoOp's layout "
                              f"(<root>/{self.dir_name}/variants.txt, images_variant_*.txt, "
                              "images/); set config.data.root")
    classnames = [line.strip() for line in variants.read_text().splitlines() if line.strip()]
    label = {c: i for i, c in enumerate(classnames)}
    items = {}
    for split in ("train", "val", "test"):
      lists = folder / f"images_variant_{split}.txt"
      entries = []
      for n, line in enumerate(lists.read_text().splitlines(), 1):
        if not line.strip():
          continue
        image, _, variant = line.strip().partition(" ")
        if variant not in label:
          raise ValueError(f"{lists}:{n}: variant {variant!r} is not in {variants}")
        entries.append(splits_lib.Item(f"{image}.jpg", label[variant], variant))
      items[split] = entries
    out = pathlib.Path(workdir) / "split_fgvc_aircraft.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    splits_lib.write_split_file(out, items)
    return out


def _info(name, dir_name, image_dir, n, split_file=None) -> NaturalInfo:
  return NaturalInfo(name, split_file or f"split_zhou_{name}.json", (), dir_name, image_dir, n)


# key -> (reference class, folder, image folder, classes): JXLiu-AI/BioMedVR datasets/<key>.py
DATASETS = {
    "caltech101": _info("Caltech101", "caltech-101", "101_ObjectCategories", 100),
    "dtd": _info("DescribableTextures", "dtd", "images", 47),
    "eurosat": _info("EuroSAT", "eurosat", "2750", 10),
    "food101": _info("Food101", "food-101", "images", 101),
    "oxford_flowers": _info("OxfordFlowers", "oxford_flowers", "jpg", 102),
    "oxford_pets": _info("OxfordPets", "oxford_pets", "images", 37),
    "ucf101": _info("UCF101", "ucf101", "UCF-101-midframes", 101),
    "stanford_cars": _info("StanfordCars", "stanford_cars", "", 196),
    "sun397": _info("SUN397", "sun397", "SUN397", 397),
    # resisc45.py:17 reads split_mlai_Resisc45.json (not zhou)
    "resisc45": _info("Resisc45", "resisc45", "NWPU-RESISC45", 45, "split_mlai_Resisc45.json"),
    "fgvc": AircraftInfo("FGVCAircraft", "variants.txt", (), "fgvc_aircraft", "images", 100),
}
# The seven the paper reports (Table 1's natural-image block).
PAPER_DATASETS = ("caltech101", "food101", "dtd", "eurosat", "oxford_pets", "oxford_flowers",
                  "ucf101")


def is_natural(dataset: str) -> bool:
  return dataset.lower() in DATASETS


def check_split(dataset: str, items, split_file) -> None:
  """A natural dataset's split file must define its number of classes (one error otherwise)."""
  info = DATASETS.get(dataset.lower())
  if info is None:
    return
  classnames = {it.label for it in items["train"]}
  if len(classnames) != info.num_classes_expected:
    raise ValueError(f"{split_file}: {len(classnames)} classes in 'train' but {info.name} has "
                     f"{info.num_classes_expected}; is this CoOp's {info.split_file_name}?")
