"""ProGrad (METHODS.md §7): CoOp whose CE gradient is projected off a conflicting KL gradient.

  python launch.py --config configs/prograd.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/prograd/btmri/16shot/seed1
  python launch.py \
      --config configs/prograd.py:setting=base2novel,dataset=btmri,model=ckpt/biomedclip \
      --workdir runs/prograd_b2n/btmri/seed1
  python launch.py --config configs/prograd.py --config.model.init=ckpt/biomedclip \
      --workdir runs/prograd --sweep=print
  ... --config.method.teacher=zeroshot   # the ProGrad paper's teacher instead of the reference's

Reference settings (few-shot): T 2.0, lambda 1.0, teacher = the prompted model itself (the
BiomedCLIP trainer's fp32 path), batch 128, SGD 0.002, 100 epochs, cosine, 1 warmup epoch at 1e-5,
N_CTX 4 from "a photo of a", unified, class at end. The spec gives no per-dataset values and no
base-to-novel values for ProGrad: every dataset uses the row of its setting below, and the
base2novel row repeats the few-shot values (to be replaced when the reference's base-to-novel
configs are read into the spec).
"""

from configs import base

# setting -> hyperparameters (the same for every dataset; see the docstring).
SETTINGS = {
    "few_shot": dict(temperature=2.0, lam=1.0, batch_size=128, lr=0.002, epochs=100),
    "base2novel": dict(temperature=2.0, lam=1.0, batch_size=128, lr=0.002, epochs=100),
}


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  if a.setting not in SETTINGS:
    raise ValueError(f"prograd config: setting={a.setting!r}; use one of {sorted(SETTINGS)}")
  s = SETTINGS[a.setting]
  c.method = base.prompt_method("prograd", teacher="self", temperature=s["temperature"],
                                lam=s["lam"])
  c.data.batch_size = s["batch_size"]
  c.optim.lr = s["lr"]
  c.optim.epochs = 2 if a.runlocal else s["epochs"]
  return c


def sweep(add, arg=None):
  base.sweep(add, arg)
