"""CoOp: learned context vectors in front of the class name, frozen BiomedCLIP.

  python launch.py --config configs/coop.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/coop/btmri/16shot/seed1
  python launch.py --config configs/coop.py:setting=base2novel,dataset=btmri,\
model=ckpt/biomedclip --workdir runs/coop_b2n/btmri/seed1
  python launch.py --config configs/coop.py:model=ckpt/biomedclip --workdir runs/coop --sweep=print

Reference settings (vit_b16): batch 32, SGD 0.002, 100 epochs (base-to-novel: 50), cosine,
1 warmup epoch at 1e-5, N_CTX 4 initialised from "a photo of a", unified context, class token at
the end. Base-to-novel needs the unified context (csc=False, the default).
"""

from biomedjax.methods import coop
from configs import base

EPOCHS = {"few_shot": 100, "base2novel": 50}


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  if a.setting not in EPOCHS:
    raise ValueError(f"configs/coop.py: setting={a.setting!r}; use one of {sorted(EPOCHS)}")
  c.method = base.method_config(coop.Options, "coop")
  c.data.batch_size = 32
  c.optim.lr = 0.002
  c.optim.epochs = 2 if a.runlocal else EPOCHS[a.setting]
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
