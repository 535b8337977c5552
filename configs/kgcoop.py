"""KgCoOp: CoOp + W * (1 - mean cosine) to the hand-crafted prompt's text features.

  python launch.py --config configs/kgcoop.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/kgcoop/btmri/16shot/seed1
  python launch.py \
      --config configs/kgcoop.py:setting=base2novel,dataset=btmri,model=ckpt/biomedclip \
      --workdir runs/kgcoop_b2n/btmri/seed1
  python launch.py --config configs/kgcoop.py --config.model.init=ckpt/biomedclip \
      --workdir runs/kgcoop --sweep=print

Reference settings (``configs/trainers/KgCoOp`` of the BiomedCoOp release): few-shot W per dataset
(table below), batch 128 (the whole few-shot set for small K), SGD 0.002, 100 epochs; base-to-novel
(``vit_b16_base2new``) W 8.0, 50 epochs, lr 0.002, batch 128. Cosine, 1 warmup epoch at 1e-5,
N_CTX 4 from "a photo of a", unified, class at end. Datasets outside the table (synthetic, own
split files) use W 2.0 (the method's default) in few-shot.
"""

from biomedjax.methods import kgcoop
from configs import base, common

FEW_SHOT_W = {
    "btmri": 2.0, "busi": 10.0, "chmnist": 1.0, "covid_19": 1.0, "ctkidney": 8.0,
    "dermamnist": 8.0, "kneexray": 4.0, "kvasir": 6.0, "lungcolon": 8.0, "octmnist": 1.0,
    "retina": 1.0,
}
BASE2NOVEL = dict(w=8.0, batch_size=128, lr=0.002, epochs=50)
FEW_SHOT = dict(batch_size=128, lr=0.002, epochs=100)


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  if a.setting == "base2novel":
    s = BASE2NOVEL
    w = s["w"]
  elif a.setting == "few_shot":
    s = FEW_SHOT
    w, c.dataset_settings = common.dataset_row(FEW_SHOT_W, a.dataset, kgcoop.Options.w,
                                               "kgcoop few-shot W")
  else:
    raise ValueError(f"configs/kgcoop.py: setting={a.setting!r}; few_shot or base2novel")
  c.method = base.method_config(kgcoop.Options, "kgcoop", w=w)
  c.data.batch_size = s["batch_size"]
  c.optim.lr = s["lr"]
  c.optim.epochs = 2 if a.runlocal else s["epochs"]
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
