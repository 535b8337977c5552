"""BioMedVR's ablations as named recipe points: ``ablation=NAME`` sets one switch of the method.

  python launch.py --config configs/biomedvr_ablations.py:dataset=busi,ablation=neg_random,\
ablations_dir=../shared/data/biomedvr/ablations,model=ckpt/clip_b16 \
      --config.method.attributes_dir=attributes --workdir runs/biomedvr_abl/busi/neg_random
  python launch.py --config configs/biomedvr_ablations.py:ablations_dir=... --sweep=print

Everything else is ``configs/biomedvr.py`` (the canonical run); the run's report row is
``biomedvr [ablation=NAME]``. ``ablations_dir`` holds the released ablation files
(JXLiu-AI/BioMedVR ``attributes_corrupted/``, ``attributes_neg_variants/``; see
``../shared/data/biomedvr/SOURCE.md``):

* ``pos_corrupt_r0.25|0.50|0.75``: des/dist from ``attributes_corrupted/poscorrupt_r<r>_full/``
  (a fraction r of the positive sentences corrupted); ``..._nocs`` also drops the CS loss (the
  released ``_nocs`` files are byte-identical to ``_full``: the variants differ by the loss only).
* ``neg_random`` / ``neg_shuffled``: the confusion file replaced by
  ``attributes_neg_variants/neg_<v>/<key>_<v>.json``.
* ``no_cs``: without the confusion-suppression loss (β = 0).
* ``no_neg``: without the negative expert (its logits zero, as the reference does without a
  confusion file).
* ``gate_per_class`` / ``gate_per_sample`` / ``gate_fixed``: the gate variants (``fixed``: w =
  (½, ½), nothing trained).

The released ablation files cover btmri and busi: the sweep runs those two, seed 1, 16 shots.
"""

from __future__ import annotations

import pathlib

from configs import biomedvr, common

CORRUPT = "attributes_corrupted/poscorrupt_r{r}_full"
NEG = "attributes_neg_variants/neg_{v}"
# name -> method overrides ({dir} = ablations_dir)
ABLATIONS = {
    "none": {},
    **{f"pos_corrupt_r{r}": {"pos_attributes_dir": "{dir}/" + CORRUPT.format(r=r)}
       for r in ("0.25", "0.50", "0.75")},
    **{f"pos_corrupt_r{r}_nocs": {"pos_attributes_dir": "{dir}/" + CORRUPT.format(r=r),
                                  "beta": 0.0} for r in ("0.25", "0.50", "0.75")},
    **{f"neg_{v}": {"negative": v, "neg_attributes_dir": "{dir}/" + NEG.format(v=v)}
       for v in ("random", "shuffled")},
    "no_cs": {"beta": 0.0},
    "no_neg": {"negative": "zeros"},
    "gate_per_class": {"gating": "per_class"},
    "gate_per_sample": {"gating": "per_sample"},
    "gate_fixed": {"gating": "fixed"},
}
EXTRA = ("ablation", "ablations_dir")
SWEEP_DATASETS = ("btmri", "busi")


def _split(arg):
  """(the biomedvr config's argument, {ablation, ablations_dir})."""
  rest, extra = [], {"ablation": "none", "ablations_dir": ""}
  for key, value in common._split_items(arg or ""):
    if key in EXTRA:
      extra[key] = value or ""
    else:
      rest.append(key if value is None else f"{key}={value}")
  return ",".join(rest), extra


def get_config(arg=None):
  rest, extra = _split(arg)
  name = extra["ablation"]
  if name not in ABLATIONS:
    raise ValueError(f"ablation={name!r}: use one of {sorted(ABLATIONS)}")
  overrides = ABLATIONS[name]
  needs_dir = _needs_files(name)
  if needs_dir and not extra["ablations_dir"]:
    raise ValueError(f"ablation={name} reads the released ablation files: add "
                     "ablations_dir=<folder with attributes_corrupted/ and "
                     "attributes_neg_variants/> to the config argument")
  c = biomedvr.get_config(rest)
  d = str(pathlib.Path(extra["ablations_dir"]).resolve()) if needs_dir else ""
  c.method.update({k: v.format(dir=d) if isinstance(v, str) else v
                   for k, v in overrides.items()})
  c.variant = "" if name == "none" else f"ablation={name}"
  return c


def _needs_files(name: str) -> bool:
  return any("{dir}" in str(v) for v in ABLATIONS[name].values())


def sweep(add, arg=None):
  """btmri and busi x every ablation; without ``ablations_dir`` only the switches that read no
  ablation file (a sweep argument ``ablations_dir=...`` adds the others)."""
  rest, extra = _split(arg)
  d = extra["ablations_dir"]
  for dataset in SWEEP_DATASETS:
    for name in ABLATIONS:
      if _needs_files(name) and not d:
        continue
      add(**common.arg(dataset=dataset, shots=16, seed=1, ablation=name,
                       **({"ablations_dir": d} if d else {})))
