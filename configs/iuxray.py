"""The IU-Xray multi-label study (Sadman et al., BIOKDD'25): zero-shot, linear probe, fine-tuning.

  python launch.py --config configs/iuxray.py:mode=zeroshot,model=ckpt/biomedclip,root=/data/iuxray \\
      --workdir runs/iuxray/zeroshot
  ... mode=linear_probe / mode=finetune (--config.method.loop=paper for the paper's schedule)
  python launch.py --config configs/iuxray.py:model=ckpt/biomedclip,root=/data/iuxray \\
      --workdir runs/iuxray --sweep=run                    # all three modes
  python -m biomedjax.studies.multilabel_study runs/iuxray/* --out runs/iuxray/tables

``root`` is the Kaggle layout (indiana_projections.csv, images/images_normalized/); the CheXbert
labels are ``root/iuxray_frontal_14labels.csv`` (the reference's per-image file) or
``--config.data.iuxray.labels_csv``. 14 labels, frontal images, the reference's 70/15/15 uid
split (``--config.data.iuxray.split=paper`` for 70/10/20). Each run also writes
``multilabel_setting.npz`` (test scores, test/train embeddings) for the study's tables.

  * zeroshot: one bare-label prompt per finding (template "{}"), raw image.text dot products
    (``--config.method.score=cosine`` for scale * cosine);
  * linear_probe: ``head_probe``, a 512 -> 14 head, AdamW 1e-4 / 1e-2, batch 24, cosine per epoch,
    <= 10 epochs, early stopping on the validation BCE (patience 5), best epoch reloaded;
  * finetune: ``finetune``, tower + head, bf16 compute, the notebook's loop (fresh AdamW at 1e-5
    every epoch), batch 24, 10 epochs, the same early stopping.
"""

import ml_collections as mlc

from configs import base, finetune, head_probe, zeroshot

MODES = ("zeroshot", "linear_probe", "finetune")


def get_config(arg=None):
  a = base.parse(arg, mode="zeroshot")
  a.dataset, a.shots = "iuxray", 0
  if a.mode == "zeroshot":
    c = zeroshot.get_config(arg=None)
    c.method.score = "dot"
  elif a.mode == "linear_probe":
    c = head_probe.get_config(arg=None)
    if a.runlocal:
      c.method.epochs = 2
  elif a.mode == "finetune":
    c = finetune.get_config(arg=None)
    c.train.early_stopping_patience = 5
    c.train.early_stopping_min_delta = 1e-4
    if a.runlocal:
      c.optim.epochs = 2
  else:
    raise ValueError(f"configs/iuxray.py mode={a.mode!r}: use one of {MODES}")
  c.seed = a.seed
  c.model.init = a.model
  c.data.dataset, c.data.root, c.data.shots = "iuxray", a.root, 0
  c.data.template = "{}"          # the bare label name is the prompt
  c.data.batch_size = 24
  c.data.iuxray = mlc.ConfigDict(dict(
      labels_csv="",              # "" = <root>/iuxray_frontal_14labels.csv
      split="reference",          # "reference" 70/15/15 or "paper" 70/10/20, by uid
      split_seed=42,
      frontal="first",            # one frontal image per uid, or "all"
      uncertain_as=0.0,           # CheXbert -1 (uncertain) is negative, as the reference
      missing_frontal="error",    # a labelled uid without a frontal image: "error" or "skip"
  ))
  return c


def sweep(add, arg=None):
  for mode in MODES:
    add(**base.common.arg(mode=mode))
