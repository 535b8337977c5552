"""LP++ (the repo's "LP2") in BiomedCoOp's few-shot harness
(trainers/LP2/linear_probe_p2_biomedclip.py).

  python launch.py --config configs/lp_plus_plus.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/lp_plus_plus/btmri/16shot/seed1

A linear head initialised from fp16 class sums plus a per-class blend alpha of the text cosines,
300 full-batch epochs with the Lipschitz step sizes, alpha moved every 10 epochs by its
accumulated gradient (``--config.method.alpha_grad=fresh|window``: the clean variants), last
epoch that ties or beats the best val. Seeds 1-3 share the seed-1 images (``data.split_seed=1``).
"""

from biomedjax.methods import lp_plus_plus
from configs import _harness


def get_config(arg=None):
  return _harness.get_config(arg, lp_plus_plus.Options, "lp_plus_plus")


def sweep(add, arg=None):
  _harness.sweep(add, arg)
