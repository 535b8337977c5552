"""BioMedVR's 16-shot table (the paper's Table 1): CoOp, CoCoOp, BiomedCoOp, VP, AR, AttrVR and
BioMedVR on 11 datasets, 16 shots, seed 1, frozen CLIP ViT-B/16.

  python launch.py --config configs/paper/biomedvr_16shot.py:model=ckpt/clip_b16,root=/data,\
prompts=prompt_ensembles.json,attributes=attributes --workdir runs/paper/biomedvr_16shot --sweep=plan
  python -m biomedjax.report runs/paper/biomedvr_16shot --published biomedvr_16shot

Seeds: the release's sweep script (``bashatt-bio.sh``, "Reproduces Table 1") runs ``train.py``
with its default ``--seed 1`` on every dataset; so does this recipe. The VR methods keep their
protocol (``configs/_vr.py``): the best test epoch as the reference logs it (epochs 1..E-1,
``eval.select=best_test``). The CoOp-family rows use each method's own protocol (last epoch) on
CLIP ViT-B/16: the BioMedVR release has no script for them, so nothing else is known of their
runs. Without ``model=`` they get random CLIP ViT-B/16 weights (``model.preset=clip_vit_b16``).
``attributes`` is the folder of ``<dataset>_{des,dist,confuse}.json`` (AttrVR, BioMedVR).
"""

from biomedjax.sweep import recipes
from configs import common

TABLE = "biomedvr_16shot"
METHODS = {"CoOp": "coop", "CoCoOp": "cocoop", "BiomedCoOp": "biomedcoop", "VP": "vp",
           "AR": "ar", "AttrVR": "attrvr", "BioMedVR": "biomedvr"}
DATASETS = common.DATASETS
SEEDS = (1,)
ATTRIBUTE_METHODS = ("attrvr", "biomedvr")


def runs() -> list[recipes.Run]:
  return [recipes.run((name, d), method=method, dataset=d, shots=16, seed=s)
          for name, method in METHODS.items() for d in DATASETS for s in SEEDS]


def _adjust(c, a) -> None:
  c.model.preset = "clip_vit_b16"  # the table's backbone when no converted model is given
  if a.method in ATTRIBUTE_METHODS:
    c.method.attributes_dir = a.attributes


get_config, sweep, unrunnable = recipes.entry_points(TABLE, runs, _adjust)
