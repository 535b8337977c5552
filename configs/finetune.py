"""Full fine-tuning of the image tower with a linear head (the IU-Xray study's recipe).

  python launch.py --config configs/finetune.py:dataset=iuxray,shots=0,model=ckpt/biomedclip,\
root=/data/iuxray --config.data.iuxray.labels_csv=/data/iuxray/chexbert.csv --workdir runs/ft
  ... --config.method.loop=paper      # head-only warm-up epoch, then LR x 0.1 with cosine
  (configs/iuxray.py:mode=finetune sets the whole study up)

Reference values: AdamW (lr 1e-4 x lr_factor 0.1 for the tower phase, weight decay 1e-2), batch
24, 10 epochs, bf16 compute for the towers, early stopping on the validation loss (patience 5,
min delta 1e-4) with the best epoch reloaded.
"""

from biomedjax.methods import finetune
from configs import base


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  c.method = base.method_config(finetune.Options, "finetune")
  c.model.compute_dtype = "bfloat16"
  c.data.batch_size = 24
  c.optim.name = "adamw"
  c.optim.lr = 1e-4
  c.optim.weight_decay = 1e-2
  c.optim.epochs = 2 if a.runlocal else 10
  c.optim.warmup_epochs = 0
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
