"""BiomedCoOp: CoOp + LLM prompt-ensemble teacher (SCCM MSE, KDSP KL, tau pruning).

  python launch.py --config configs/biomedcoop.py:dataset=btmri,shots=16,seed=1,\
model=ckpt/biomedclip,prompts=prompt_ensembles.json --workdir runs/biomedcoop/btmri/16shot/seed1
  python launch.py --config configs/biomedcoop.py:setting=base2novel,dataset=kvasir,\
model=ckpt/biomedclip,prompts=prompt_ensembles.json --workdir runs/biomedcoop_b2n/kvasir/seed1
  python launch.py --config configs/biomedcoop.py --config.model.init=ckpt/biomedclip \
      --config.data.llm_prompts=prompt_ensembles.json --workdir runs/biomedcoop --sweep=run

``prompts=`` (or ``--config.data.llm_prompts``) is the user's prompt-ensemble file in the format
of the published ``prompt_ensembles.json``; BiomedCoOp refuses to build without it.

Reference settings (``configs/trainers/BiomedCoOp`` of the release): CoOp's prompts (N_CTX 4 from
"a photo of a", unified, end), 50 LLM prompts per class, batch 4, SGD lr 0.0025, 1 warmup epoch at
1e-5, cosine, BERT dropout active on the learned prompts (``text_dropout``, a reference quirk).
Few-shot: 100 epochs and the per-dataset (lambda_SCCM, lambda_KDSP, tau) below. Base-to-novel:
50 epochs and its own table; BUSI has no base-to-novel config in the reference (3 classes), so
``setting=base2novel,dataset=busi`` is refused and the base-to-novel sweep leaves BUSI out.
Datasets outside the tables (``synthetic``, own split files) use the method's defaults
(0.5, 0.25, 1.5).
"""

from biomedjax.methods import biomedcoop
from configs import base, common

# dataset: (lambda_sccm, lambda_kdsp, tau), few-shot configs of the reference.
FEW_SHOT = {
    "btmri": (0.5, 0.25, 1.5),
    "busi": (0.75, 0.75, 1.5),
    "chmnist": (0.25, 0.25, 1.5),
    "covid_19": (0.5, 2.0, 1.5),
    "ctkidney": (1.0, 0.5, 1.5),
    "dermamnist": (5.0, 20.0, 1.5),
    "kneexray": (5.0, 20.0, 1.75),
    "kvasir": (0.75, 0.75, 1.5),
    "lungcolon": (0.5, 0.5, 1.5),
    "octmnist": (1.0, 0.75, 1.5),
    "retina": (0.25, 0.25, 1.5),
}
# dataset: (lambda_sccm, lambda_kdsp, tau), base-to-novel configs of the reference.
BASE2NOVEL = {
    "btmri": (0.5, 0.5, 1.25),
    "chmnist": (10.0, 1.0, 1.5),
    "covid_19": (20.0, 1.0, 1.25),
    "ctkidney": (10.0, 0.25, 1.25),
    "dermamnist": (2.0, 0.5, 1.5),
    "kneexray": (0.25, 3.0, 1.25),
    "kvasir": (1.0, 1.0, 1.25),
    "lungcolon": (0.25, 0.75, 1.25),
    "octmnist": (0.75, 0.5, 1.5),
    "retina": (5.0, 1.0, 2.0),
}
NO_BASE2NOVEL = ("busi",)
_O = biomedcoop.Options
DEFAULT = (_O.lambda_sccm, _O.lambda_kdsp, _O.tau)
EPOCHS = {"few_shot": 100, "base2novel": 50}


def get_config(arg=None):
  a = base.parse(arg, prompts="")
  c = base.get_config(a)
  table = BASE2NOVEL if a.setting == "base2novel" else FEW_SHOT
  if a.setting not in EPOCHS:
    raise ValueError(f"configs/biomedcoop.py: setting={a.setting!r}, use one of {sorted(EPOCHS)}")
  if a.setting == "base2novel" and a.dataset in NO_BASE2NOVEL:
    raise ValueError(f"configs/biomedcoop.py: the reference has no base-to-novel config for "
                     f"{a.dataset!r} (3 classes); use setting=few_shot")
  (sccm, kdsp, tau), c.dataset_settings = common.dataset_row(
      table, a.dataset, DEFAULT, f"biomedcoop {a.setting} (lambda_sccm, lambda_kdsp, tau)")
  c.method = base.method_config(biomedcoop.Options, "biomedcoop", n_prompts=50,
                                lambda_sccm=sccm, lambda_kdsp=kdsp, tau=tau)
  c.data.llm_prompts = a.prompts
  c.data.batch_size = 4
  c.optim.lr = 0.0025
  c.optim.epochs = 2 if a.runlocal else EPOCHS[a.setting]
  return c


def sweep(add, arg=None):
  """The benchmark grid; axes the command names (``dataset=btmri,seed=1``) narrow it."""
  grid = common.sweep_grid(arg)[1]
  if base.parse(arg, prompts="").setting == "base2novel":
    datasets = [d for d in common.DATASETS if d not in NO_BASE2NOVEL]
    common.fewshot_grid(add, **{"datasets": datasets, **grid, "shots": (16,)},
                        setting="base2novel")
  else:
    common.fewshot_grid(add, **grid)
