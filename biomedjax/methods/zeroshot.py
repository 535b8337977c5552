"""Zero-shot classification: cosine similarity to the text features of class prompts.

Training-free (``stages = ("fit",)``, nothing to fit). The class text features are computed once
per run in ``prepare`` and live in the frozen pytree; ``logits`` is then one matmul on cached
image features. Defined for both task kinds: on a multilabel task each class's logit is scored
independently (sigmoid), on a multiclass one they compete (softmax). Base-to-novel: the method is
class-agnostic, the novel classes get their own prompts.

Scores (``score``): "cosine", open_clip's ``exp(logit_scale) * cos(image, text)``; or "dot", the
raw dot product of the unnormalised image and text features with no scale, as the IU-Xray study
(Sadman et al., BIOKDD'25) scores each finding with ``encode_image(normalize=False) @
encode_text(normalize=False).T`` and a bare-label prompt (template "{}").

Two prompt sources:

* the task's hand-crafted template ("a photo of a {}.", '_' in class names read as spaces);
* ``ensemble=True``: the task's LLM prompts per class (BiomedCoOp's ``prompt_ensembles.json``).
  The reference encodes the i-th prompt of every class, L2-normalises, averages over i and
  renormalises. Each class's result depends only on its own prompts, so here every class averages
  over its own prompts: identical when all classes have the same count, and still defined when
  they do not (one class of the published file has 47 prompts, the rest 50).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from biomedjax.methods import options
from biomedjax.methods.base import Backbone, Method, Task
from biomedjax.models.clip import l2_normalize

SCORES = ("cosine", "dot")
ENCODE_BATCH = 64  # prompts per encoder call; one fixed shape, so one compilation


@dataclasses.dataclass(frozen=True)
class ZeroShotOptions:
  ensemble: bool = False  # average the task's LLM prompts instead of the single template
  n_prompts: int = 0      # ensemble: the first n prompts of each class (0: all of them)
  # "cosine": exp(logit_scale) * cos(image, text) (open_clip's logits); "dot": the raw dot product
  # of the unnormalised image and text features, no scale (the IU-Xray study's scores)
  score: str = "cosine"


Options = ZeroShotOptions


def encode_prompts(backbone: Backbone, params, texts) -> jnp.ndarray:
  """(N, D) L2-normalised text features of ``texts``, in fixed-size batches.

  All texts are tokenized at one bucketed length and the last batch is padded by repeating its
  final row (the padding rows are dropped), so any number of prompts compiles once. Traceable
  (the token ids are host constants), so ``jax.eval_shape`` of a method's ``prepare`` works.
  """
  ids, mask = backbone.tokenize(list(texts), length="bucket")
  n = len(ids)
  pad = -n % ENCODE_BATCH
  ids = np.concatenate([ids, np.repeat(ids[-1:], pad, 0)])
  mask = np.concatenate([mask, np.repeat(mask[-1:], pad, 0)])
  out = [backbone.encode_texts(params, ids[i:i + ENCODE_BATCH], mask[i:i + ENCODE_BATCH])
         for i in range(0, len(ids), ENCODE_BATCH)]
  return jnp.concatenate(out)[:n]


def class_prompts(task: Task, n_prompts: int = 0) -> list[tuple[str, ...]]:
  """Each class's LLM prompts; a class without prompts, or with fewer than asked, is an error."""
  if task.llm_prompts is None:
    raise ValueError("zeroshot ensemble=True needs the task's LLM prompts (data.llm_prompts, "
                     "a prompt_ensembles.json file); none were given")
  out = []
  for name in task.classnames:
    prompts = task.llm_prompts.get(name) or task.llm_prompts.get(name.replace("_", " "))
    if not prompts:
      raise ValueError(f"no LLM prompts for class {name!r}; the prompt file has "
                       f"{len(task.llm_prompts)} classes, e.g. {sorted(task.llm_prompts)[:5]}")
    if n_prompts and len(prompts) < n_prompts:
      raise ValueError(f"class {name!r} has {len(prompts)} LLM prompts, fewer than "
                       f"n_prompts={n_prompts}")
    out.append(tuple(prompts[:n_prompts] if n_prompts else prompts))
  return out


class ZeroShot(Method):
  name = "zeroshot"
  options_type = ZeroShotOptions
  k_independent = True  # no training image is used: one "any K" column in the report
  inputs = "features"
  stages = ("fit",)
  fit_needs_data = False  # the engine then skips encoding the train/val images for ``fit``
  task_kinds = ("multiclass", "multilabel")
  study_name = "zs"  # its column in the IU-Xray study's tables

  @property
  def study_scores(self) -> str:
    """Raw dot products ("zeroshot", the study's rule ``dot>0``) or scaled cosines ("head")."""
    return "zeroshot" if self.opts.score == "dot" else "head"

  def __init__(self, backbone: Backbone, task: Task, opts: ZeroShotOptions, objective=None):
    if opts.score not in SCORES:
      raise ValueError(f"config.method.score={opts.score!r}: use one of {SCORES}")
    if opts.score == "dot" and opts.ensemble:
      raise ValueError("config.method.score='dot' scores one prompt per class; it does not "
                       "combine with ensemble=True")
    super().__init__(backbone, task, opts, objective)
    self.prompts = class_prompts(task, opts.n_prompts) if opts.ensemble else None

  def class_text_features(self, backbone_params) -> jnp.ndarray:
    """(n_cls, D) normalised class embeddings (single template or ensemble mean)."""
    if self.prompts is None:
      return encode_prompts(self.backbone, backbone_params, self.task.prompts())
    feats = encode_prompts(self.backbone, backbone_params, [p for ps in self.prompts for p in ps])
    bounds = np.cumsum([0] + [len(ps) for ps in self.prompts])
    means = jnp.stack([feats[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:])])
    return l2_normalize(means)

  def raw_text_features(self, backbone_params) -> jnp.ndarray:
    """(n_cls, D) unnormalised text features of the class prompts (open_clip normalize=False)."""
    ids, mask = self.backbone.tokenize(self.task.prompts(), length="bucket")
    return self.backbone.text_features(backbone_params, ids, mask)

  def prepare(self, backbone_params) -> dict:
    if self.opts.score == "dot":
      return {"text_features": self.raw_text_features(backbone_params)}
    return {"text_features": self.class_text_features(backbone_params)}

  def fit(self, frozen, train, val) -> dict:
    return {}  # nothing to fit: the classifier is the text features

  def logits(self, trainable, frozen, image_features):
    if self.opts.score == "dot":
      return image_features @ frozen["text_features"].T
    return self.backbone.cosine_logits(frozen["backbone"], image_features, frozen["text_features"])

  def transfer(self, trainable, novel):
    return trainable  # nothing trained; the novel method encodes its own class prompts


def build(backbone: Backbone, task: Task, cfg=None, objective=None) -> ZeroShot:
  return ZeroShot(backbone, task, options.read(ZeroShotOptions, cfg, "zeroshot"), objective)
