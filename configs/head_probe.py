"""A linear head fitted on cached features by the IU-Xray study's early-stopped AdamW loop.

  python launch.py --config configs/head_probe.py:dataset=iuxray,shots=0,model=ckpt/biomedclip,\
root=/data/iuxray --config.data.iuxray.labels_csv=/data/iuxray/chexbert.csv --workdir runs/lp
  (configs/iuxray.py:mode=linear_probe sets the whole study up)

Defaults are the reference's (AdamW 1e-4, weight decay 1e-2, batch 24, <= 10 epochs, cosine per
epoch, early stopping on the validation loss with patience 5); the loop runs in the method's
``fit``, so config.optim does not apply.
"""

from biomedjax.methods import head_probe
from configs import base


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  c.method = base.method_config(head_probe.Options, "head_probe",
                                **({"epochs": 2} if a.runlocal else {}))
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
