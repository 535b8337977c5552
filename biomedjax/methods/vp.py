"""VP (visual prompting, Bahng et al. 2022) as AttrVR and BioMedVR run it: the watermark program.

Reference: tmlr-group/AttrVR ``experiments/fs_vp.py`` (= JXLiu-AI/BioMedVR
``experiments/baseline_vp.py``). The full 224 image is standardised first, then ``P * M`` is
added on a 30-pixel frame (the 164 x 164 centre stays clean), with no sigmoid and no clipping
(``programs.py``); label head "This is a photo of {}."; cross-entropy. (The reference parses
``--pad`` as the float 30.0, which torch rejects as a size; the integer 30 is meant.)

Trainable: ``{"program": (3, 224, 224)}``, zero init: 150,528 stored, 69,840 effective. The
original PadPrompter's N(0, 1) init is ``program_init="normal"``.
"""

from __future__ import annotations

import dataclasses

from biomedjax.methods import ar, options


@dataclasses.dataclass(frozen=True)
class Options(ar.Options):
  program: str = "watermark"
  image_size: int = 224
  border: int = 30


class VP(ar.LabelProgram):
  name = "vp"
  options_type = Options


def build(backbone, task, cfg=None, objective=None) -> VP:
  return VP(backbone, task, options.read(Options, cfg, "vp"), objective)
