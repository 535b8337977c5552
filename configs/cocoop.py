"""CoCoOp: CoOp context shifted per image by a meta-network, frozen BiomedCLIP.

  python launch.py --config configs/cocoop.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/cocoop/btmri/16shot/seed1
  python launch.py --config configs/cocoop.py:setting=base2novel,dataset=btmri,\
model=ckpt/biomedclip --workdir runs/cocoop_b2n/btmri/seed1
  python launch.py --config configs/cocoop.py --config.model.init=ckpt/biomedclip \
      --workdir runs/cocoop --sweep=run

Reference settings, the same in both settings: batch 1, SGD lr 0.001, 10 epochs, cosine, 1 warmup
epoch at 1e-5, N_CTX 4 from "a photo of a", unified context, class token at the end, fp32.
(Reference quirk without effect here: its base-to-novel eval script loads epoch 50, which a
10-epoch run never writes; the model evaluated is the last epoch's, as here.)
"""

from biomedjax.methods import cocoop
from configs import base


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  c.method = base.method_config(cocoop.Options, "cocoop")
  c.data.batch_size = 1
  c.optim.lr = 0.001
  c.optim.epochs = 2 if a.runlocal else 10
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
