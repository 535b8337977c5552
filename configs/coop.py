"""CoOp (METHODS.md §4): learned context vectors in front of the class name, frozen BiomedCLIP.

  python launch.py --config configs/coop.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/coop/btmri/16shot/seed1
  python launch.py --config configs/coop.py:model=ckpt/biomedclip --workdir runs/coop --sweep=print

Reference settings (vit_b16): batch 32, SGD 0.002, 100 epochs, cosine, 1 warmup epoch at 1e-5,
N_CTX 4 initialised from "a photo of a", unified context, class token at the end.
"""

from configs import base


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  c.method = base.prompt_method("coop")
  c.data.batch_size = 32
  c.optim.lr = 0.002
  c.optim.epochs = 2 if a.runlocal else 100
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
