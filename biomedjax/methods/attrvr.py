"""AttrVR (Cai et al., ICLR 2025): the padding program scored against attribute sentences.

Reference: tmlr-group/AttrVR ``experiments/fs_attrvr.py`` (= JXLiu-AI/BioMedVR
``experiments/baseline_attrvr.py``). Program as AR (S = 192, 16-pixel frame, sigmoid, zero init,
standardised after adding). Text: descriptive (des) and distinctive (dist) attributes per class,
m = 20 drawn per class as the reference draws (``attributes.py``); each head's logit is the mean
of the top k = 3 of ``scale * cos`` over the class's sentences (``vr_heads.py``);
``logits = λ L_des + (1 − λ) L_dist`` with λ = 0.5; cross-entropy.

Trainable: ``{"program": (3, 224, 224)}``: 150,528 stored, 39,936 effective.
"""

from __future__ import annotations

import dataclasses

from biomedjax.methods import options, reprogram, vr_heads


@dataclasses.dataclass(frozen=True)
class Options(reprogram.AttributeOptions):
  pass


class AttrVR(reprogram.ProgramMethod):
  name = "attrvr"
  options_type = Options

  def __init__(self, backbone, task, opts: Options, objective=None):
    reprogram.check_attribute_options(opts)
    super().__init__(backbone, task, opts, objective)
    self.sentences = self.read_attributes(("des", "dist"))

  def prepare(self, backbone_params):
    return vr_heads.encode_heads(self.backbone, backbone_params, self.sentences)

  def head(self, frozen, name, feats):
    return vr_heads.attribute_logits(feats, frozen[name], vr_heads.valid_mask(
        self.sentences[name]), self.scale(frozen), self.opts.k)

  def logits(self, trainable, frozen, images01):
    feats = self.image_features(trainable, frozen, images01)[0]
    lam = self.opts.attr_lambda
    return lam * self.head(frozen, "des", feats) + (1 - lam) * self.head(frozen, "dist", feats)


def build(backbone, task, cfg=None, objective=None) -> AttrVR:
  return AttrVR(backbone, task, options.read(Options, cfg, "attrvr"), objective)
