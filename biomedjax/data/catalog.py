"""The 11 BiomedCoOp benchmark datasets: class names in label order, split file and folder.

Class names are those of the published split files (the text prompts are built from them, so
they must match the reference exactly). Lookup is by lower-case key through the literal dict
``DATASETS``; there is no registry to fill.
"""

from __future__ import annotations

import dataclasses
import pathlib


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str                    # the reference's spelling, e.g. "COVID_19"
  split_file_name: str         # e.g. "split_COVID_19.json"
  classnames: tuple[str, ...]  # index = label
  dir_name: str                # images live under <root>/<dir_name>/<dir_name>/

  @property
  def num_classes(self) -> int:
    return len(self.classnames)

  def image_root(self, root: str | pathlib.Path) -> pathlib.Path:
    """Where the split file's relative paths point in the reference layout."""
    return pathlib.Path(root) / self.dir_name / self.dir_name

  def split_file(self, root: str | pathlib.Path) -> pathlib.Path:
    """Where Dassl looks for the split file: beside the image folder."""
    return pathlib.Path(root) / self.dir_name / self.split_file_name

  def run_split_file(self, root, workdir) -> pathlib.Path:
    """The split file a run reads (a layout without one writes it into ``workdir``)."""
    del workdir
    return self.split_file(root)


def _info(name: str, *classnames: str) -> DatasetInfo:
  return DatasetInfo(name, f"split_{name}.json", tuple(classnames), name)


DATASETS = {
    "btmri": _info("BTMRI", "glioma tumor", "meningioma tumor", "pituitary tumor",
                   "normal brain"),
    "busi": _info("BUSI", "benign tumor", "malignant tumor", "normal scan"),
    "chmnist": _info("CHMNIST", "adipose tissue", "complex stroma", "debris",
                     "empty background", "immune cells", "normal mucosal glands",
                     "simple stroma", "tumour epithelium"),
    "covid_19": _info("COVID_19", "covid lungs", "lung opacity lungs", "viral pneumonia lungs",
                      "normal lungs"),
    "ctkidney": _info("CTKidney", "cyst kidney", "kidney stone", "kidney tumor",
                      "normal kidney"),
    "dermamnist": _info("DermaMNIST", "actinic keratosis", "basal cell carcinoma",
                        "benign keratosis", "dermatofibroma", "melanoma", "melanocytic nevus",
                        "vascular lesion"),
    "kneexray": _info("KneeXray", "healthy knee", "doubtful osteoarthritis",
                      "minimal osteoarthritis", "moderate osteoarthritis",
                      "severe osteoarthritis"),
    "kvasir": _info("Kvasir", "dyed lifted polyps", "dyed resection margins", "esophagitis",
                    "normal cecum", "normal pylorus", "normal z line", "polyps",
                    "ulcerative colitis"),
    "lungcolon": _info("LungColon", "colon adenocarcinoma", "colon benign tissue",
                       "lung adenocarcinoma", "lung benign tissue",
                       "lung squamous cell carcinoma"),
    # No published split file: prepare.py generates one from the class folders (sorted order:
    # CNV, DME, DRUSEN, NORMAL). The names are the reference's, as its LLM prompt file keys them.
    "octmnist": _info("OCTMNIST", "choroidal neovascularization", "diabetic macular edema",
                      "drusen", "normal OCT scan"),
    "retina": _info("RETINA", "diabetic retinopathy", "glaucoma", "cataract", "normal retina"),
}


def get(name: str) -> DatasetInfo:
  """The catalog entry for ``name`` (case-insensitive, e.g. "btmri", "COVID_19")."""
  try:
    return DATASETS[name.lower()]
  except KeyError:
    raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def lookup(name: str) -> DatasetInfo | None:
  """A medical entry of ``DATASETS`` or a natural-image one (``natural.py``), else None."""
  from biomedjax.data import natural  # it extends DatasetInfo
  return DATASETS.get(name.lower()) or natural.DATASETS.get(name.lower())
