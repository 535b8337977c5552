"""Linear probe on frozen image features: L2 logistic regression, C searched on val, no gradient
steps (the reference's ``trainers/linear_probe_biomedclip.py``: L-BFGS, max_iter 1000).

  python launch.py --config configs/linear_probe.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/linear_probe/btmri/16shot/seed1
"""

from biomedjax.methods import linear_probe
from configs import base


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  c.method = base.method_config(linear_probe.Options, "linear_probe")
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
