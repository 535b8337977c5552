"""The IU-Xray study's Tables 1-3 (Sadman et al., BIOKDD'25): zero-shot, fine-tuning and linear
probing of BiomedCLIP on IU-Xray's frontal images, 14 labels; one run each (the three tables
are read from the same three runs).

  python launch.py --config configs/paper/iuxray.py:model=ckpt/biomedclip,root=/data/iuxray \
      --workdir runs/paper/iuxray --sweep=plan
  python -m biomedjax.studies.multilabel_study runs/paper/iuxray/* --out runs/paper/iuxray/tables

Each run is ``configs/iuxray.py`` with its ``mode``. The study's Table 1 F1 and exact match use a
decision rule of their own (``rowminmax@0.5``), so the tables come from
``biomedjax.studies.multilabel_study``.
"""

from biomedjax.sweep import recipes

TABLE = "iuxray_table1"
MODES = {"zs": "zeroshot", "ft": "finetune", "lp": "linear_probe"}


def runs() -> list[recipes.Run]:
  return [recipes.run((setting,), method="iuxray", mode=mode, seed=1)
          for setting, mode in MODES.items()]


get_config, sweep, unrunnable = recipes.entry_points(TABLE, runs)
