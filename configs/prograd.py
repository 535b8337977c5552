"""ProGrad: CoOp whose CE gradient is projected off a conflicting KL gradient.

  python launch.py --config configs/prograd.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/prograd/btmri/16shot/seed1
  python launch.py \
      --config configs/prograd.py:setting=base2novel,dataset=btmri,model=ckpt/biomedclip \
      --workdir runs/prograd_b2n/btmri/seed1
  python launch.py --config configs/prograd.py --config.model.init=ckpt/biomedclip \
      --workdir runs/prograd --sweep=print
  ... --config.method.teacher=zeroshot   # the ProGrad paper's teacher instead of the reference's

Reference settings (``configs/trainers/ProGrad`` of the BiomedCoOp release): few-shot T per
dataset (table below), lambda 1.0, batch 128, SGD 0.002, 100 epochs; base-to-novel T 1.0,
lr 0.0015, 50 epochs, batch 128. Teacher = the prompted model itself (the BiomedCLIP trainer's fp32
path), cosine, 1 warmup epoch at 1e-5, N_CTX 4 from "a photo of a", unified, class at end.
Datasets outside the table use T 2.0 (the method's default) in few-shot.
"""

from biomedjax.methods import prograd
from configs import base, common

FEW_SHOT_T = {
    "btmri": 2.0, "busi": 0.25, "chmnist": 1.0, "covid_19": 1.0, "ctkidney": 1.0,
    "dermamnist": 4.0, "kneexray": 1.0, "kvasir": 1.0, "lungcolon": 1.0, "octmnist": 1.0,
    "retina": 1.0,
}
BASE2NOVEL = dict(temperature=1.0, batch_size=128, lr=0.0015, epochs=50)
FEW_SHOT = dict(batch_size=128, lr=0.002, epochs=100)


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  if a.setting == "base2novel":
    s = BASE2NOVEL
    t = s["temperature"]
  elif a.setting == "few_shot":
    s = FEW_SHOT
    t, c.dataset_settings = common.dataset_row(FEW_SHOT_T, a.dataset,
                                               prograd.Options.temperature,
                                               "prograd few-shot temperature")
  else:
    raise ValueError(f"configs/prograd.py: setting={a.setting!r}; few_shot or base2novel")
  c.method = base.method_config(prograd.Options, "prograd", temperature=t)
  c.data.batch_size = s["batch_size"]
  c.optim.lr = s["lr"]
  c.optim.epochs = 2 if a.runlocal else s["epochs"]
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
