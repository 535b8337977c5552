"""AR: the padding program with the class-label head (AttrVR's "AR" baseline).

Reference: tmlr-group/AttrVR ``experiments/fs_ar.py`` (= JXLiu-AI/BioMedVR
``experiments/baseline_ar.py``), from the adversarial-reprogramming line (Elsayed et al. 2019,
Tsai et al. 2020); no label mapping. The S = 192 image is zero-padded to 224, ``sigmoid(P) * M``
is added on the 16-pixel frame, then the result is standardised (``programs.py``); logits =
``scale * cos(f, W)`` against "This is a photo of {}." (``vr_heads.py``); cross-entropy.

Trainable: ``{"program": (3, 224, 224)}``, zero init: 150,528 stored, 39,936 effective.
"""

from __future__ import annotations

import dataclasses

from biomedjax.methods import options, reprogram, vr_heads


@dataclasses.dataclass(frozen=True)
class Options(reprogram.ProgramOptions):
  template: str = vr_heads.LABEL_TEMPLATE  # the label head's prompt, "_" in names read as " "


class LabelProgram(reprogram.ProgramMethod):
  """One program + the label head: AR (padding) and VP (watermark) differ only in options."""
  name = "ar"
  options_type = Options

  def __init__(self, backbone, task, opts, objective=None):
    super().__init__(backbone, task, opts, objective)
    self.sentences = {"label": vr_heads.label_sentences(task.classnames, opts.template)}

  def prepare(self, backbone_params):
    return {"label": vr_heads.label_weights(self.backbone, backbone_params,
                                            self.sentences["label"])}

  def logits(self, trainable, frozen, images01):
    feats = self.image_features(trainable, frozen, images01)[0]
    return vr_heads.label_logits(feats, frozen["label"], self.scale(frozen))


def build(backbone, task, cfg=None, objective=None) -> LabelProgram:
  return LabelProgram(backbone, task, options.read(Options, cfg, "ar"), objective)
