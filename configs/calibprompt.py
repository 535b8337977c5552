"""CalibPrompt: CoOp-style prompts on a frozen Med-VLM trained with LS + SMAC + angular separation.

  python launch.py --config configs/calibprompt.py:dataset=covid,model=ckpt/biomedclip,root=/data \
      --workdir runs/calibprompt/biomedclip/covid/8shot/seed1
  python launch.py --config configs/calibprompt.py:backbone=plip,dataset=kather,model=ckpt/plip,root=/data \
      --workdir runs/calibprompt/plip/kather/8shot/seed1
  python launch.py --config configs/calibprompt.py:backbone=quiltnet,model=ckpt/quiltnet,root=/data \
      --workdir runs/calibprompt --sweep=print            # the backbone's datasets x seed 1
  ... :backbone=plip,dataset=pannuke,objective=FL ...      # a baseline row of the study
  ... :backbone=plip,dataset=pannuke,objective=zeroshot ... # the zero-shot row

The study (Basu et al., BMVC 2025; ``iabh1shekbasu/CalibPrompt``): four Med-VLMs, each on its
datasets (``STUDY``), each cell a few-shot prompt-tuning run per objective. Data in CalibPrompt's
layout: ``<root>/<dataset>/images/{train,test}/<class folder>/`` + ``<root>/<dataset>/classnames.txt``
(``biomedjax.data.calibprompt_layout``; test is also the reference's val).

``backbone`` names a model config (``BACKBONES``: family, preset, the tiny preset of the same
family for runlocal, how to convert the weights). PLIP (HF ``CLIPModel`` ViT-B/32) and QuiltNet
(open_clip ViT-B-32) run in the ``openai`` family; MedCLIP (Swin-T + Bio_ClinicalBERT) in the
``medclip`` family.
quirk: the reference loads QuiltNet's weights into OpenAI CLIP's ``model.py`` (QuickGELU,
``models/clip/model.py:162``) though open_clip's ViT-B-32 uses GELU; convert it with
``--preset clip_vit_b32`` to keep the reference's QuickGELU.

``objective`` (default "calibprompt"): the paper's LS + SMAC + AS with the pair's (alpha, w_AS)
from ``TABLE``; a reference ``ENABLED_LOSSES`` list joined by "+" (``FL``, ``CE``, ``MBLS``,
``LS+SMAC+AS``, ``ECCV_ZS`` ...; ``calibration_losses.reference_loss``: the listed losses only,
no cross-entropy added); or "zeroshot" (the reference's ``ZeroshotCLIP`` with its template).

Protocol (``PROTOCOL``, per backbone, from ``configs/trainers/*/*.yaml``, ``train.py`` and the
drivers ``run/classification/fewshot/all_fewshot_<backbone>.sh``): 8 shots, seed 1, 50 epochs,
batch 16 with Dassl's drop-last rule, 16 random context vectors, class token at the end, SGD
lr 0.002 (momentum 0.9, weight decay 5e-4), cosine after 1 constant warm-up epoch at 1e-5 (MedCLIP
1e-3), RandomResizedCrop + flip, last-epoch model, images standardised with OpenAI CLIP's
mean/std for every backbone (each trainer yaml's ``INPUT.PIXEL_MEAN/STD``, e.g.
``configs/trainers/CoOp_MedCLIP/vit_b32_medclip_c16_ep50_batch16.yaml:11-12``, applied by Dassl's
``build_transform``, ``Dassl.pytorch/dassl/data/transforms/transforms.py:198,305-309``).
quirk: for MedCLIP that is not MedCLIP's own grayscale mean/std (``models/medclip/constants.py``
lines 8-9, which the converted model's config carries); ``--config.model.pixel_norm=model`` uses
MedCLIP's own. Precision: PLIP and QuiltNet train in fp16 in
the reference (CoOp yaml ``PREC: "fp16"`` and ``clip.build_model`` casting to half); biomedjax has
no fp16 path and runs them in float32 (the results say so: ``config.model.compute_dtype``).
"""

from biomedjax import calibration_losses
from biomedjax.evaluation import calib_study
from biomedjax.data import calibprompt_layout
from biomedjax.methods import calibprompt, zeroshot
from biomedjax.models import config as model_config
from configs import base, common

# Backbone name -> model config. "family" must be a biomedjax family (models/config.FAMILIES).
BACKBONES = {
    "biomedclip": dict(family="biomedclip", preset="biomedclip", tiny="tiny",
                       trainer="CoOp_BioMedCLIP",
                       convert="python -m convert --src hf-hub:microsoft/BiomedCLIP-PubMedBERT_256"
                               "-vit_base_patch16_224 --out ckpt/biomedclip"),
    "plip": dict(family="openai", preset="clip_vit_b32", tiny="tiny_clip", trainer="CoOp",
                 convert="python -m convert --src <HF vinid/plip dir> --out ckpt/plip"),
    "quiltnet": dict(family="openai", preset="clip_vit_b32", tiny="tiny_clip", trainer="CoOp",
                     convert="python -m convert --src hf-hub:wisdomik/QuiltNet-B-32 "
                             "--out ckpt/quiltnet --preset clip_vit_b32"),
    "medclip": dict(family="medclip", preset="medclip", tiny="tiny_medclip",
                    trainer="CoOp_MedCLIP",
                    convert="python -m convert --src <released MedCLIP-ViT folder> "
                            "--out ckpt/medclip"),
}

# The study: each backbone's datasets (drivers' ``new_class_datasets``).
STUDY = {
    "biomedclip": ("rsna18", "covid"),    # all_fewshot_biomedclip.sh:9
    "medclip": ("rsna18", "covid"),       # all_fewshot_medclip.sh:7
    "plip": ("kather", "pannuke", "digestpath"),       # all_fewshot_plip.sh:8
    "quiltnet": ("kather", "pannuke", "digestpath"),   # all_fewshot_quiltnet.sh:8
}

# (backbone, dataset or "*") -> (alpha of LS and SMAC, w_AS). PLIP/QuiltNet: the drivers' case
# statements (all_fewshot_plip.sh:50-55, all_fewshot_quiltnet.sh:50-55, "*" their default
# branch); BiomedCLIP/MedCLIP: their yamls (no driver override). The README table
# (calibprompt_hparams.csv) agrees with every entry.
TABLE = {
    ("biomedclip", "*"): (0.1, 3.0),
    ("medclip", "*"): (0.2, 1.0),
    ("plip", "kather"): (0.05, 0.01), ("plip", "pannuke"): (0.2, 0.1),
    ("plip", "digestpath"): (0.03, 0.001), ("plip", "*"): (0.2, 0.1),
    ("quiltnet", "kather"): (0.01, 1.0), ("quiltnet", "pannuke"): (0.1, 0.001),
    ("quiltnet", "digestpath"): (0.05, 0.001), ("quiltnet", "*"): (0.01, 1.0),
}

# The reference protocol per backbone (trainer yaml, train.py defaults, drivers).
_COMMON = dict(shots=8, seeds=(1,), epochs=50, batch_size=16, test_batch_size=100, n_ctx=16,
               optimizer="sgd", lr=0.002, momentum=0.9, weight_decay=5e-4, schedule="cosine",
               warmup_epochs=1, warmup_type="constant", warmup_lr=1e-5, image_size=224,
               transforms=("random_resized_crop", "random_flip", "normalize"),
               pixel_norm="clip")
PROTOCOL = {
    "biomedclip": dict(_COMMON, precision="fp32"),   # PREC fp16 default, never cast
    "medclip": dict(_COMMON, warmup_lr=1e-3, precision="fp32"),  # dtype of its fp32 weights
    "plip": dict(_COMMON, precision="fp16"),
    "quiltnet": dict(_COMMON, precision="fp16"),
}
OBJECTIVES = ("calibprompt", "zeroshot")  # or a reference ENABLED_LOSSES list, "+"-joined
DATASETS = calibprompt_layout.DATASETS


def alpha_and_w_as(backbone: str, dataset: str) -> tuple[float, float]:
  for key in ((backbone, dataset), (backbone, "*")):
    if key in TABLE:
      return TABLE[key]
  raise ValueError(f"calibprompt config: no (alpha, w_AS) for backbone={backbone!r} on "
                   f"dataset={dataset!r}; known: {sorted(TABLE)}")


def loss_config(backbone: str, dataset: str, objective: str = "calibprompt") -> dict:
  """``config.loss`` of one study row: the paper's objective or a reference ENABLED_LOSSES list
  (LS/SMAC alpha and the AS weight of the pair in either case)."""
  alpha, w_as = alpha_and_w_as(backbone, dataset)
  if objective == "calibprompt":
    return dict(data="softmax_ce", label_smoothing=alpha, smoothing="reference",
                terms=f"smac:1.0,as:{w_as}")
  return calibration_losses.reference_loss(objective.split("+"), alpha, {"AS": w_as})


def model_for(backbone: str, runlocal: bool = False) -> dict:
  """``config.model`` fields of a backbone name; a family this build lacks is an error."""
  if backbone not in BACKBONES:
    raise ValueError(f"calibprompt config: backbone={backbone!r}; known: {sorted(BACKBONES)}")
  b = BACKBONES[backbone]
  if b["family"] not in model_config.FAMILIES:
    raise ValueError(f"calibprompt config: backbone={backbone!r} needs the {b['family']!r} "
                     f"model family, which this build does not have (families: "
                     f"{model_config.FAMILIES})")
  return dict(preset=b["tiny"] if runlocal else b["preset"])


def get_config(arg=None):
  # The run arguments' defaults are the reference's: COVID, 8 shots, seed 1, BiomedCLIP.
  a = common.parse_arg(arg, **{**base.RUN_ARGS, "dataset": "covid", "shots": 8},
                       backbone="biomedclip", objective="calibprompt")
  c = base.get_config(a)
  c.model.update(model_for(a.backbone, a.runlocal))
  c.study_cell = calib_study.study_cell(a.backbone, a.objective)  # the study's row and column
  p = PROTOCOL[a.backbone]
  c.model.pixel_norm = p["pixel_norm"]
  # the dataset's zero-shot template (the ZS rows, and the ZS inputs of ECCV / TMM terms)
  c.data.template = calibprompt_layout.zero_shot_template(a.dataset)
  # the five study datasets are read from CalibPrompt's layout; any other dataset (a catalog key,
  # "synthetic", a split file) the usual way.
  c.data.layout = "calibprompt" if a.dataset in DATASETS else ""
  c.data.test_batch_size = p["test_batch_size"] if not a.runlocal else c.data.test_batch_size
  if a.objective == "zeroshot":
    c.method = base.method_config(zeroshot.Options, "zeroshot")
    c.data.shots = 0  # no training image is used (the reference's "shots_8" dir name aside)
    return c
  c.method = base.method_config(calibprompt.Options, "calibprompt", n_ctx=p["n_ctx"])
  c.loss.update(loss_config(a.backbone, a.dataset, a.objective))
  c.data.batch_size = p["batch_size"]
  c.data.epoch_drop_last = True
  c.data.random_flip = True  # RandomResizedCrop -> RandomHorizontalFlip (flip on, unlike CoOp)
  c.optim.update(dict(name=p["optimizer"], lr=p["lr"], momentum=p["momentum"],
                      weight_decay=p["weight_decay"], schedule=p["schedule"],
                      warmup_epochs=p["warmup_epochs"], warmup_lr=p["warmup_lr"]))
  c.optim.epochs = 2 if a.runlocal else p["epochs"]
  return c


def sweep(add, arg=None):
  """The backbone's study datasets x its shots x seeds (``backbone=`` and ``objective=`` in the
  command's config string travel to every point)."""
  a = common.parse_arg(common.sweep_grid(arg)[0], **{**base.RUN_ARGS, "dataset": "covid"},
                       backbone="biomedclip", objective="calibprompt")
  p = PROTOCOL.get(a.backbone, _COMMON)
  common.fewshot_grid(add, datasets=STUDY.get(a.backbone, ("covid", "rsna18")),
                      shots=(p["shots"],), seeds=p["seeds"])
