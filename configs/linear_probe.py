"""Linear probe on frozen image features (METHODS.md §9): C searched on val, no gradient steps.

  python launch.py --config configs/linear_probe.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/linear_probe/btmri/16shot/seed1
"""

import ml_collections as mlc

from configs import base


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  c.method = mlc.ConfigDict(dict(name="linear_probe", max_iter=1000))
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
