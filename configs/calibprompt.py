"""CalibPrompt: CoOp-style prompts on frozen BiomedCLIP trained with LS + SMAC + angular separation.

  python launch.py --config configs/calibprompt.py:dataset=covid,model=ckpt/biomedclip,root=/data \
      --workdir runs/calibprompt/covid/8shot/seed1
  python launch.py --config configs/calibprompt.py:model=ckpt/biomedclip,root=/data \
      --workdir runs/calibprompt --sweep=print

Data in CalibPrompt's layout: <root>/<dataset>/images/{train,test}/<class folder>/ and
<root>/<dataset>/classnames.txt (dataset = covid or rsna18; test is also the reference's val).
Other datasets (e.g. dataset=busi) are read as for every method. Zero-shot with the reference's
template: ``configs/zeroshot.py:dataset=covid,... --config.data.layout=calibprompt
--config.data.template="A chest X-ray image of {} patient"``.

Reference settings (``configs/trainers/CoOp_BioMedCLIP/vit_b32_biomedclip_c16_ep50_batch16.yaml``,
``train.py``, ``run/classification/fewshot/all_fewshot_biomedclip.sh`` of
``iabh1shekbasu/CalibPrompt``): train augmentation RandomResizedCrop + horizontal flip,
16 random context vectors, class token at the end, SGD lr 0.002
(momentum 0.9, weight decay 5e-4), cosine over 50 epochs after 1 warm-up epoch at 1e-5, batch
16 with Dassl's drop-last rule (24 RSNA18 images: one step per epoch on a random 16), 8 shots,
seed 1, last-epoch model. Objective: LS (alpha/(C-1) on wrong classes) + SMAC + w_AS * AS, one
alpha for LS and SMAC, (alpha, w_AS) per backbone and dataset from ``TABLE``.
"""

from biomedjax.data import calibprompt_layout
from biomedjax.methods import calibprompt
from configs import base, common

# (backbone, dataset or "*") -> (alpha, w_AS). Only BiomedCLIP runs in biomedjax; the other
# rows are the reference's values, kept so that the table is complete.
TABLE = {
    ("biomedclip", "*"): (0.1, 3.0),
    ("medclip", "*"): (0.2, 1.0),
    ("plip", "kather"): (0.05, 0.01), ("plip", "pannuke"): (0.2, 0.1),
    ("plip", "digestpath"): (0.03, 0.001),
    ("quiltnet", "kather"): (0.01, 1.0), ("quiltnet", "pannuke"): (0.1, 0.001),
    ("quiltnet", "digestpath"): (0.05, 0.001),
}
DATASETS = ("covid", "rsna18")


def alpha_and_w_as(backbone: str, dataset: str) -> tuple[float, float]:
  for key in ((backbone, dataset), (backbone, "*")):
    if key in TABLE:
      return TABLE[key]
  raise ValueError(f"calibprompt config: no (alpha, w_AS) for backbone={backbone!r} on "
                   f"dataset={dataset!r}; known: {sorted(TABLE)}")


def get_config(arg=None):
  # The run arguments' defaults are the reference's: COVID, 8 shots, seed 1.
  a = common.parse_arg(arg, **{**base.RUN_ARGS, "dataset": "covid", "shots": 8},
                       backbone="biomedclip")
  if a.backbone != "biomedclip":
    raise ValueError(f"calibprompt config: backbone={a.backbone!r}; biomedjax runs BiomedCLIP "
                     "only (the table's other rows are the reference's values)")
  c = base.get_config(a)
  alpha, w_as = alpha_and_w_as(a.backbone, a.dataset)
  c.method = base.method_config(calibprompt.Options, "calibprompt")
  c.loss.update(dict(data="softmax_ce", label_smoothing=alpha, smoothing="reference",
                     terms=f"smac:1.0,as:{w_as}"))
  # covid / rsna18 are read from CalibPrompt's layout; any other dataset (a catalog key,
  # "synthetic", a split file) the usual way.
  c.data.layout = "calibprompt" if a.dataset in DATASETS else ""
  c.data.template = calibprompt_layout.zero_shot_template(a.dataset)  # zero-shot runs only
  c.data.batch_size = 16
  c.data.epoch_drop_last = True
  c.data.random_flip = True  # RandomResizedCrop -> RandomHorizontalFlip (flip on, unlike CoOp)
  c.optim.lr = 0.002
  c.optim.epochs = 2 if a.runlocal else 50
  return c


def sweep(add, arg=None):
  common.fewshot_grid(add, datasets=DATASETS, shots=(8,), seeds=(1,))
