"""CalibPrompt (Basu et al., BMVC 2025): CoOp-style prompts trained with a calibration objective.

Reference: ``trainers/classification/coop_biomedclip.py`` of ``iabh1shekbasu/CalibPrompt``.
16 shared context vectors ~ N(0, 0.02^2) (no word init; the reference raises for one), class
token at the end (other positions raise), prompt "X X ... X {name}." with BiomedCLIP's tokenizer,
text = BERT [CLS] -> MLP projection -> L2 norm, logits = exp(logit_scale) cos(image, text).
Only the context trains (12,288 parameters at width 768).

quirk (``embed_mode="full_embeddings"``, the default): the reference stores as its frozen prompt
prefix/suffix the output of BERT's whole embedding module (word + position + token-type 0, then
the embedding LayerNorm), not the word embeddings, and feeds [prefix, ctx, suffix] to
``BertModel(inputs_embeds=...)``, which adds position and token-type embeddings and applies the
LayerNorm again. So [CLS], class-name, ".", [SEP] and pad rows get them twice, the context rows
once. ``embed_mode="word_embeddings"`` splices raw word embeddings (CoOp's construction).
The full embeddings depend on positions 0..L-1 only, so they are the same at the bucketed prompt
length as at the reference's 256 (pads are masked and the text tower pools [CLS]). The quirk
lives in the reference's BiomedCLIP (BERT) prompt learner; on an OpenAI-style CLIP backbone the
prompts are CoOp's word-embedding splice whatever ``embed_mode`` says.

Objective: label smoothing (alpha/(C-1) on the wrong classes) + SMAC + w_AS * angular separation
of the class text features, one alpha shared by LS and SMAC; (alpha, w_AS) per backbone in
``configs/calibprompt.py``. The method passes its normalised text features to the objective
(``text_features=``) and adds no regulariser of its own.

Zero-shot inputs (the registry's ECCV_PENALTY / ECCV_ZS / TEXT_MOMENT_MATCHING terms): when the
objective reads them, ``prepare`` encodes the task's template prompts (the reference's
``ZeroshotCLIP`` with its dataset template, ``coop.py:375-407``) with the same frozen backbone, and
every step passes ``zero_shot_logits`` = exp(logit_scale) cos(batch image, template text) (the
reference's ``model_inference`` on the same augmented batch, coop.py:439-442) and
``zero_shot_text_features``. quirk not reproduced: the reference's PLIP/QuiltNet zero-shot model is
fp16; here it computes in ``config.model.compute_dtype``. quirk: the reference's BiomedCLIP
trainer never passes text features to TEXT_MOMENT_MATCHING (it falls into its "standard losses"
branch and returns 0, ``coop_biomedclip.py:217-219``); here the term is computed on every
backbone.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn

from biomedjax import objectives
from biomedjax.methods import options, zeroshot
from biomedjax.methods.base import Backbone, Method, Task
from biomedjax.methods.prompt_learner import PromptLearner
from biomedjax.models.clip import l2_normalize

EMBED_MODES = ("full_embeddings", "word_embeddings")


@dataclasses.dataclass(frozen=True)
class Options:
  """The reference's values (``train.py`` N_CTX 16; CSC False; position end; CTX_INIT "")."""
  n_ctx: int = 16
  class_token_position: str = "end"       # the reference implements "end" only
  embed_mode: str = "full_embeddings"     # reference quirk; "word_embeddings": CoOp's splice
  prompt_length: int = 0                  # tokens per prompt; 0 -> longest rounded up to 16


def full_embeddings(backbone: Backbone, params, ids) -> jax.Array:
  """BERT's embedding module on ids: LayerNorm(word + position + token type 0), (N, L, width)."""
  t = params["text"]
  length = ids.shape[1]
  x = (t["word_embeddings"]["embedding"][ids] + t["position_embeddings"]["embedding"][None, :length]
       + t["token_type_embeddings"]["embedding"][0])
  return nn.LayerNorm(backbone.cfg.text.ln_eps).apply({"params": t["embed_norm"]}, x)


# The reference objective (``config.loss`` of configs/calibprompt.py), used when none is given.
REFERENCE_LOSS = dict(data="softmax_ce", label_smoothing=0.1, smoothing="reference",
                      terms="smac:1.0,as:3.0")


class CalibPrompt(Method):
  name = "calibprompt"
  options_type = Options
  inputs = "features"
  stages = ("train",)
  task_kinds = ("multiclass",)
  kind_note = "its LS/SMAC/AS objective is defined on softmax outputs"

  def __init__(self, backbone: Backbone, task: Task, opts: Options, objective=None):
    if opts.class_token_position != "end":
      raise ValueError(f"config.method.class_token_position={opts.class_token_position!r}: "
                       "CalibPrompt's BiomedCLIP prompt learner implements 'end' only")
    if opts.embed_mode not in EMBED_MODES:
      raise ValueError(f"config.method.embed_mode={opts.embed_mode!r}: use one of {EMBED_MODES}")
    super().__init__(backbone, task, opts,
                     objective or objectives.make(REFERENCE_LOSS, task))
    self.learner = PromptLearner(backbone, task.classnames, opts.n_ctx, "", False, "end",
                                 opts.prompt_length)

  def prepare(self, backbone_params) -> dict:
    ids = jnp.asarray(self.learner.layout.ids)
    if self.opts.embed_mode == "full_embeddings" and self.backbone.cfg.family == "biomedclip":
      out = {"token_embeddings": full_embeddings(self.backbone, backbone_params, ids)}
    else:
      out = {"token_embeddings": self.backbone.embed_tokens(backbone_params, ids)}
    if getattr(self.objective, "needs_zero_shot", False):
      out["zero_shot_text_features"] = zeroshot.encode_prompts(self.backbone, backbone_params,
                                                               self.task.prompts())
    return out

  def init(self, rng, frozen) -> dict:
    return {"ctx": self.learner.init_context(rng, frozen["backbone"])}

  def text_features(self, trainable, frozen) -> jax.Array:
    """(n_cls, D) normalised text features of the learned prompts (BERT in eval mode)."""
    return l2_normalize(self.learner.text_features(
        frozen["backbone"], trainable["ctx"], frozen["token_embeddings"]))

  def _logits(self, text, frozen, image_features):
    return self.backbone.cosine_logits(frozen["backbone"], image_features, text)

  def logits(self, trainable, frozen, image_features) -> jax.Array:
    return self._logits(self.text_features(trainable, frozen), frozen, image_features)

  def train_logits(self, trainable, frozen, batch, rng):
    text = self.text_features(trainable, frozen)
    extras = {"text_features": text}
    if "zero_shot_text_features" in frozen:
      zs_text = frozen["zero_shot_text_features"]
      extras.update(zero_shot_text_features=zs_text,
                    zero_shot_logits=self._logits(zs_text, frozen, batch["features"]))
    return self._logits(text, frozen, batch["features"]), extras

  def transfer(self, trainable, novel):
    """A unified context is class-agnostic: it is reused under the novel class names."""
    return trainable


def build(backbone: Backbone, task: Task, cfg=None, objective=None) -> CalibPrompt:
  return CalibPrompt(backbone, task, options.read(Options, cfg, "calibprompt"), objective)
