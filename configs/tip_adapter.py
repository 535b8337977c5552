"""Tip-Adapter, training-free, in BiomedCoOp's few-shot harness (the ``finetune False`` branch of
trainers/TipAdapter/tip_adapter_biomedclip.py).

  python launch.py --config configs/tip_adapter.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/tip_adapter/btmri/16shot/seed1

Cache from one augmented view of the training set, logit scale 85.2323 hard-coded, (beta, alpha)
searched over the reference's 200 x 200 grid (0.1 .. 49.7505) on val with its first-found tie
rule. Seeds 1-3 share the seed-1 few-shot images (``data.split_seed=1``).
"""

from biomedjax.methods import tip_adapter
from configs import _harness


def get_config(arg=None):
  return _harness.get_config(arg, tip_adapter.Options, "tip_adapter")


def sweep(add, arg=None):
  _harness.sweep(add, arg)
