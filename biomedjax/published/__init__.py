"""The published tables of the project's papers, as data: what a reproduction is compared with.

Each CSV beside this module holds one published table, every value as printed (trailing zeros
kept, percentages without ``%``). ``TABLES`` names each table's source and how its numbers were
made; ``load(name)`` reads one as a list of row dicts (strings, as printed), ``value(row, col)``
as a float. Nothing here is read from outside the package at run time.

``SPLIT_SHA256`` holds the sha256 of each published BiomedCoOp split file (the release's
``split_<Name>.json``), so a run on another split can be told apart from a run on the published
one (the report flags it). ``PRINTED_AVERAGE_DIFFERS`` and ``BASE2NOVEL_HM`` record where a
source's printed average is not the mean of its own rows (the comparison shows both).
"""

from __future__ import annotations

import csv
import dataclasses
import pathlib

HERE = pathlib.Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Table:
  file: str
  source: str       # where the numbers were read
  backbone: str     # the backbone the numbers are of
  metric: str       # what the value columns hold
  keys: tuple       # the columns naming a cell


TABLES = {
    "biomedcoop_fewshot": Table(
        "biomedcoop_fewshot_average.csv",
        "BiomedCoOp (Koleilat et al., CVPR 2025), repository README (HealthX-Lab/BiomedCoOp), "
        "'Few-shot Evaluation' table: accuracy averaged over 11 datasets and 3 seeds",
        "BiomedCLIP", "accuracy %", ("method", "shots")),
    "biomedcoop_base2novel": Table(
        "biomedcoop_base2novel_average.csv",
        "BiomedCoOp (Koleilat et al., CVPR 2025), repository README, 'Base-to-Novel "
        "Generalization' table: base / novel / HM averaged over the datasets and 3 seeds",
        "BiomedCLIP", "accuracy %", ("method",)),
    "biomedvr_16shot": Table(
        "biomedvr_16shot.csv",
        "BioMedVR (Liu et al., ECCV 2026), project page 16-shot table (the paper's Table 1)",
        "CLIP ViT-B/16", "accuracy %", ("method", "key")),
    "calibprompt_ece": Table(
        "calibprompt_ece.csv",
        "CalibPrompt (Basu et al., BMVC 2025), repository README (iabh1shekbasu/CalibPrompt "
        "c6ec13e), Results: ECE of CE prompt tuning vs CalibPrompt (repository numbers, 8 shots, "
        "seed 1 per its driver scripts)", "per row", "ECE %", ("backbone", "dataset", "objective")),
    "calibprompt_hparams": Table(
        "calibprompt_hparams.csv",
        "CalibPrompt repository README, hyperparameter table (alpha = LS and SMAC smoothing, "
        "as_weight = angular-separation weight)", "per row", "hyperparameters",
        ("backbone", "dataset")),
    "iuxray_table1": Table(
        "iuxray_table1.csv", "Sadman, Zulkernine and Kwan, BIOKDD'25, Table 1 (test set)",
        "BiomedCLIP", "fractions; time in minutes", ("setting",)),
    "iuxray_table2": Table(
        "iuxray_table2.csv", "Sadman et al., BIOKDD'25, Table 2 (per-label F1, test set)",
        "BiomedCLIP", "F1 fraction", ("disease",)),
    "iuxray_table3": Table(
        "iuxray_table3.csv", "Sadman et al., BIOKDD'25, Table 3 (per-domain F1, test set)",
        "BiomedCLIP", "F1 fraction", ("domain",)),
}

# sha256 of the published split files (BiomedCoOp release, ``split_<Name>.json``). OCTMNIST has
# none: biomedjax.data.prepare writes one from the class folders.
SPLIT_SHA256 = {
    "split_BTMRI.json": "9818f18eb8e7d211f3719b6bd9d1fa31eba24df2f1c3048766b2e25a26505025",
    "split_BUSI.json": "3117f49854e639920f85d3ea11e34ecbe261c390410b19c29c424e631396ed4f",
    "split_CHMNIST.json": "61a8616d5a759646a272ef2f84b321ae0136c2f318e194c0a0f690a0aabe2f1d",
    "split_COVID_19.json": "9c73d1ef14da6bae08de1108720f2df2883cf678fb6a52debf6bca6ae54e24d3",
    "split_CTKidney.json": "a711bdb6d171cb5ad7231a5ddda29d640459989e72d15726d3f64db740b0b54f",
    "split_DermaMNIST.json": "23892796a89275ce641fc4a1f16000e1e1c7cea90a5f1452c19b209be2c7eda6",
    "split_KneeXray.json": "e0590a075c2ccaf22a1372a1fa78845231d4b17a67901bab328f17649719bf37",
    "split_Kvasir.json": "e4716c2bf50cf7e3809bfae98eeda6fb1f028e28370f57a367aa80efa0dd1fc7",
    "split_LungColon.json": "02b10f1b789d7e27b9e7903c5e36501e9dabaa17a71fa5fb0fd41ecf1d4b63cb",
    "split_RETINA.json": "526b297caf66d7a69ed836565f6ac04f6a59db9e1b768d881e78836adc9a12ee",
}

# Published method / backbone / dataset names -> biomedjax keys (configs/<key>.py, catalog keys).
METHOD_KEYS = {
    "CLIP-Adapter": "clip_adapter", "Tip-Adapter": "tip_adapter", "Tip-Adapter-F": "tip_adapter_f",
    "Standard LP": "linear_probe", "LP++": "lp_plus_plus", "CoOp": "coop", "CoCoOp": "cocoop",
    "KgCoOp": "kgcoop", "ProGrad": "prograd", "BiomedCoOp": "biomedcoop",
    "BiomedCLIP": "zeroshot", "VP": "vp", "AR": "ar", "AttrVR": "attrvr", "BioMedVR": "biomedvr",
    "CalibPrompt": "calibprompt",
}
BACKBONE_KEYS = {"BioMedCLIP": "biomedclip", "MedCLIP": "medclip", "PLIP": "plip",
                 "QuiltNet": "quiltnet"}
CALIBPROMPT_DATASET_KEYS = {"COVID": "covid", "RSNA18": "rsna18", "Kather": "kather",
                            "PanNuke": "pannuke", "DigestPath": "digestpath"}
IUXRAY_MODES = {"zs": "zeroshot", "ft": "finetune", "lp": "linear_probe"}

# The datasets the BiomedCoOp averages are over (the README: "11 biomedical recognition
# datasets"); base-to-novel has no BUSI config in the release (3 classes), so 10 there.
BIOMEDCOOP_DATASETS = ("btmri", "busi", "chmnist", "covid_19", "ctkidney", "dermamnist",
                       "kneexray", "kvasir", "lungcolon", "octmnist", "retina")
BIOMEDCOOP_BASE2NOVEL_DATASETS = tuple(d for d in BIOMEDCOOP_DATASETS if d != "busi")

# Rows whose printed average is NOT the mean of the row's own 11 datasets (checked from the
# CSV: |printed - mean| > 0.05 after rounding to one decimal); the comparison shows both.
PRINTED_AVERAGE_DIFFERS = {"biomedvr_16shot": ("CoOp", "CoCoOp", "BiomedCoOp", "AR")}
# How the base-to-novel HM column was computed, as far as the printed numbers tell: only
# BiomedCoOp's HM equals the HM of its mean base and novel; the other five are 1.5-2.3 points
# lower, which fits a mean of per-dataset HMs (the HM is concave, so that mean is never higher).
BASE2NOVEL_HM = {"BiomedCoOp": "hm_of_means"}
BASE2NOVEL_HM_DEFAULT = "mean_of_hms"


def path(name: str) -> pathlib.Path:
  if name not in TABLES:
    raise KeyError(f"unknown published table {name!r}; known: {', '.join(TABLES)}")
  return HERE / TABLES[name].file


def load(name: str) -> list[dict[str, str]]:
  """The table's rows, each ``{column: value as printed}`` (empty = no value in the source)."""
  with open(path(name), newline="") as f:
    return list(csv.DictReader(f))


def value(row: dict, column: str) -> float | None:
  text = row.get(column, "")
  return float(text) if text not in ("", None) else None
