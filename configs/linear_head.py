"""A linear head on frozen image features trained by gradient steps, for either task kind.

  python launch.py --config configs/linear_head.py:dataset=btmri,shots=16,seed=1,\
model=ckpt/biomedclip --workdir runs/linear_head/btmri/16shot/seed1
  python launch.py --config configs/linear_head.py:dataset=synthetic_multilabel,shots=0 \
      --config.model.preset=tiny --workdir /tmp/linear_head_multilabel

The data term follows the task (``config.loss.data="auto"``): softmax cross-entropy for a
multiclass dataset, sigmoid BCE for a multilabel one. Defaults: the engine's Dassl recipe (SGD
lr 0.002, momentum 0.9, cosine, 1 warmup epoch) at batch 32 for 50 epochs; no reference exists
for this method (the closed-form reference probe is configs/linear_probe.py).
"""

from biomedjax.methods import linear_head
from configs import base


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  c.method = base.method_config(linear_head.Options, "linear_head")
  c.data.batch_size = 32
  c.optim.lr = 0.002
  c.optim.epochs = 2 if a.runlocal else 50
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
