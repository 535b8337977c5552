"""CalibPrompt's ECE table: CE prompt tuning vs CalibPrompt (LS + SMAC + AS) for the 10
backbone x dataset pairs of the README, 8 shots, seed 1 (the release's few-shot driver scripts).

  python launch.py --config configs/paper/calibprompt_ece.py:model=ckpt/biomedclip,root=/data \
      --workdir runs/paper/calibprompt_ece --sweep=plan
  python -m biomedjax.report runs/paper/calibprompt_ece --published calibprompt_ece

Both objectives run ``configs/calibprompt.py`` (16 random context vectors, the reference's
schedule); ``objective=ce`` sets the loss to plain cross-entropy (no smoothing, no SMAC/AS), the
README's "CE (baseline)". Each run's ``variant`` says which objective it is. ``model`` must be the
converted backbone of the pair's family. Pairs whose backbone or dataset biomedjax cannot run
yet are listed by ``--sweep=plan`` with the reason (``configs/calibprompt.py`` decides, so they
become runnable when it supports them).
"""

from biomedjax.data import catalog
from biomedjax.sweep import recipes
from configs import calibprompt

TABLE = "calibprompt_ece"
PAIRS = (("PLIP", "Kather"), ("PLIP", "PanNuke"), ("PLIP", "DigestPath"),
         ("QuiltNet", "Kather"), ("QuiltNet", "PanNuke"), ("QuiltNet", "DigestPath"),
         ("BioMedCLIP", "COVID"), ("BioMedCLIP", "RSNA18"), ("MedCLIP", "COVID"),
         ("MedCLIP", "RSNA18"))
OBJECTIVES = {"CE": "ce", "CalibPrompt": "calibprompt"}


def blocked(backbone: str, dataset: str) -> str:
  """Why configs/calibprompt.py cannot run the pair yet ("" when it can): every reason."""
  reasons = []
  try:
    calibprompt.get_config(f"backbone={backbone},dataset={dataset}")
  except (ValueError, KeyError) as e:
    reasons.append(str(e))
  if dataset not in calibprompt.DATASETS and dataset not in catalog.DATASETS:
    reasons.append(f"dataset {dataset!r} has no reader yet (configs/calibprompt.py reads "
                   f"{', '.join(calibprompt.DATASETS)} in CalibPrompt's layout)")
  return "; ".join(reasons)


def runs() -> list[recipes.Run]:
  out = []
  for bb_name, ds_name in PAIRS:
    bb, ds = bb_name.lower(), ds_name.lower()
    why = blocked(bb, ds)
    out += [recipes.run((bb_name, ds_name, obj_name), why, method="calibprompt", backbone=bb,
                        dataset=ds, shots=8, seed=1, objective=obj)
            for obj_name, obj in OBJECTIVES.items()]
  return out


def _adjust(c, a) -> None:
  if a.objective not in OBJECTIVES.values():
    raise ValueError(f"configs/paper/calibprompt_ece.py: objective={a.objective!r}; use one of "
                     f"{sorted(OBJECTIVES.values())}")
  if a.objective == "ce":
    c.loss.update(dict(label_smoothing=0.0, terms=""))
  c.variant = f"backbone={a.backbone},objective={a.objective}"


get_config, sweep, unrunnable = recipes.entry_points(TABLE, runs, _adjust)
