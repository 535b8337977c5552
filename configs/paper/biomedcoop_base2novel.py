"""BiomedCoOp's base-to-novel table: zero-shot BiomedCLIP, CoOp, CoCoOp, KgCoOp, ProGrad and
BiomedCoOp on 10 datasets (the release has no base-to-novel config for BUSI), 16 shots of the
base classes, seeds 1-3 (zero-shot: one run per dataset, it uses no training image).

  python launch.py --config configs/paper/biomedcoop_base2novel.py:model=ckpt/biomedclip,root=/data,\
prompts=prompt_ensembles.json --workdir runs/paper/biomedcoop_base2novel --sweep=plan
  python -m biomedjax.report runs/paper/biomedcoop_base2novel --published biomedcoop_base2novel

The published HM column mixes two definitions (biomedjax/published: BASE2NOVEL_HM); the report
shows both beside each row.
"""

from biomedjax.sweep import recipes
from configs import biomedcoop, common

TABLE = "biomedcoop_base2novel"
METHODS = {"BiomedCLIP": "zeroshot", "CoOp": "coop", "CoCoOp": "cocoop", "KgCoOp": "kgcoop",
           "ProGrad": "prograd", "BiomedCoOp": "biomedcoop"}
DATASETS = tuple(d for d in common.DATASETS if d not in biomedcoop.NO_BASE2NOVEL)
SEEDS = (1, 2, 3)


def runs() -> list[recipes.Run]:
  out = []
  for name, method in METHODS.items():
    for d in DATASETS:
      if method == "zeroshot":  # K- and seed-independent: one run (configs/zeroshot.py's sweep)
        out.append(recipes.run((name,), method=method, dataset=d, shots=0, seed=1,
                               setting="base2novel"))
        continue
      out += [recipes.run((name,), method=method, dataset=d, shots=16, seed=s,
                          setting="base2novel") for s in SEEDS]
  return out


get_config, sweep, unrunnable = recipes.entry_points(TABLE, runs)
