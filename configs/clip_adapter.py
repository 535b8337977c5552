"""CLIP-Adapter in BiomedCoOp's few-shot harness (trainers/ClipAdapter/clip_adapter_biomedclip.py).

  python launch.py --config configs/clip_adapter.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/clip_adapter/btmri/16shot/seed1

A bias-free 512-128-512 ReLU adapter on the normalised image feature, residual ratio 0.5, plain
SGD (lr 0.01) for 20 epochs at batch 32 on a fresh augmented view per epoch, the reference's
per-iteration warm-up + periodic cosine, and the LAST epoch's adapter (``select=best_val``: the
first best-val epoch). Seeds 1-3 share the seed-1 few-shot images (``data.split_seed=1``).
"""

from biomedjax.methods import clip_adapter
from configs import _harness


def get_config(arg=None):
  return _harness.get_config(arg, clip_adapter.Options, "clip_adapter")


def sweep(add, arg=None):
  _harness.sweep(add, arg)
