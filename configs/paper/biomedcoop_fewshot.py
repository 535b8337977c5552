"""BiomedCoOp's few-shot table: 10 methods x 11 datasets x K in {1, 2, 4, 8, 16} x seeds 1-3
(1,650 runs) on BiomedCLIP; the published cells are the averages over the 11 datasets.

  python launch.py --config configs/paper/biomedcoop_fewshot.py:model=ckpt/biomedclip,root=/data,\
prompts=prompt_ensembles.json --workdir runs/paper/biomedcoop_fewshot --sweep=plan
  ... --sweep=packed    (or --sweep=run, --sweep=count, --sweep=array --index=I)
  python -m biomedjax.report runs/paper/biomedcoop_fewshot --published biomedcoop_fewshot

Each run is ``configs/<method>.py`` as it stands (the reference protocol of that method, its
per-dataset values included); ``prompts`` goes to BiomedCoOp only. Narrow with
``methods=coop+biomedcoop``, ``datasets=btmri``, ``shots=16``, ``seeds=1``.
"""

from biomedjax.sweep import recipes
from configs import common

TABLE = "biomedcoop_fewshot"
# published method name -> config; the README's table order
METHODS = {"CLIP-Adapter": "clip_adapter", "Tip-Adapter": "tip_adapter",
           "Tip-Adapter-F": "tip_adapter_f", "Standard LP": "linear_probe", "LP++": "lp_plus_plus",
           "CoOp": "coop", "CoCoOp": "cocoop", "KgCoOp": "kgcoop", "ProGrad": "prograd",
           "BiomedCoOp": "biomedcoop"}
DATASETS = common.DATASETS  # the 11 of the catalog
SHOTS = (1, 2, 4, 8, 16)
SEEDS = (1, 2, 3)


def runs() -> list[recipes.Run]:
  return [recipes.run((name, str(k)), method=method, dataset=d, shots=k, seed=s)
          for name, method in METHODS.items() for d in DATASETS for k in SHOTS for s in SEEDS]


get_config, sweep, unrunnable = recipes.entry_points(TABLE, runs)
