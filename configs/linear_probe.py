"""Linear probe on frozen image features: L2 logistic regression, C searched on val, no gradient
steps (the reference's ``trainers/linear_probe_biomedclip.py``: L-BFGS, max_iter 1000).

  python launch.py --config configs/linear_probe.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/linear_probe/btmri/16shot/seed1

It runs in the reference's main.py harness, as CLIP-Adapter and Tip-Adapter do: one augmented
view of the training set (RandomResizedCrop scale 0.5-1 + flip) and the seed-1 few-shot images
for every run seed. The previous behaviour (eval-transform features, each seed its own split):
``--config.method.train_features=eval --config.data.split_seed=0``.
"""

from biomedjax.methods import linear_probe
from configs import _harness, base


def get_config(arg=None):
  return _harness.get_config(arg, linear_probe.Options, "linear_probe")


def sweep(add, arg=None):
  base.sweep(add, arg)
