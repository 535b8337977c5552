"""KgCoOp: CoOp kept close to the hand-crafted prompt's text features.

Learned prompts overfit the few base classes and drift away from the general knowledge in the
frozen text tower. KgCoOp (reference: ``trainers/KgCoOp/kgcoop_biomedclip.py`` of the BiomedCoOp
release) adds a penalty on that drift: W * (1 - mean_c cos(t_c, t_c^clip)), with t_c the learned
prompt's text feature of class c and t_c^clip the frozen feature of the template "a photo of a
{}." (the task's template). Everything else is CoOp: the context ``ctx`` is the only trainable
leaf and the logits are CoOp's, so evaluation (and base-to-novel transfer) is unchanged.
W is per dataset in the reference (BTMRI 2.0; see configs/kgcoop.py); batch 128, lr 0.002.

t^clip depends only on the frozen backbone and the class names, so ``prepare`` encodes it once per
run; a step runs the text tower on the learned prompts only.

Reference details kept: the reference's cosine (``CosineSimilarity(eps=1e-7)``) is taken between
already normalised features, so it is the plain dot product used here; only ``ctx`` trains (the
reference also builds an unused meta-net and bias vector that never receive gradients).
Deviation: the reference's KgCoOp prompt forward always puts the class name at the end, whatever
CLASS_TOKEN_POSITION says; here ``class_token_position`` is honoured (default "end", as there).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from biomedjax.methods import coop, options
from biomedjax.methods.base import Backbone, Task
from biomedjax.methods.zeroshot import encode_prompts


@dataclasses.dataclass(frozen=True)
class KgCoOpOptions(coop.CoOpOptions):
  """CoOp's options plus the weight of the knowledge-guided penalty (BTMRI: 2.0)."""
  w: float = 2.0


Options = KgCoOpOptions


class KgCoOp(coop.CoOp):
  name = "kgcoop"
  options_type = KgCoOpOptions

  def __init__(self, backbone: Backbone, task: Task, opts: KgCoOpOptions, objective=None):
    if not opts.w >= 0:  # also rejects NaN
      raise ValueError(f"kgcoop: w={opts.w!r} must be a number >= 0 (the reference uses 2.0)")
    super().__init__(backbone, task, opts, objective)

  def prepare(self, backbone_params) -> dict:
    """Adds t^clip: (n_cls, D) normalised features of the hand-crafted class prompts."""
    clip = encode_prompts(self.backbone, backbone_params, self.task.prompts())
    return {**super().prepare(backbone_params), "clip_text_features": clip}

  def regularizer(self, trainable, frozen, batch, logits, extras):
    """W * (1 - mean_c cos(t_c, t_c^clip)), on the text features the logits used."""
    drift = 1.0 - jnp.mean(jnp.sum(extras["text_features"] * frozen["clip_text_features"], -1))
    return self.opts.w * drift, {"kg": drift}


def build(backbone: Backbone, task: Task, cfg=None, objective=None) -> KgCoOp:
  return KgCoOp(backbone, task, options.read(KgCoOpOptions, cfg, "kgcoop"), objective)
