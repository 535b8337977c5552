"""BiomedCoOp: CoOp regularised by a frozen teacher from LLM prompt ensembles.

Reference: ``trainers/BiomedCoOp/biomedcoop_biomedclip.py`` of the BiomedCoOp release (batch 4,
SGD lr 0.0025, 100 epochs few-shot / 50 base-to-novel, 50 LLM prompts per class, per-dataset
(lambda_SCCM, lambda_KDSP, tau) in configs/biomedcoop.py).

CoOp's learned prompts are pulled towards what an LLM says each class looks like, in two ways:

* SCCM: MSE between the learned class text features and the mean of the class's LLM prompt
  features (normalised);
* KDSP: KL from the zero-shot predictions of a teacher that averages, per step, only the LLM
  prompts that agree with the batch (prompts whose score is an outlier are dropped).

The LLM prompt features ``E`` (n_cls, P, D) never change during a run, so they are encoded once
in ``prepare``, as is the SCCM target. The teacher's image features are the student's: both come
from the same frozen image tower on the same (augmented) pixels, so the reference's second
image-tower pass is skipped; the features are equal.

Outlier rule, as the reference computes it: score_p = mean_b max_c s f_b . E_cp;
z = (score - median) / MAD with ``torch.median``'s lower middle value for even lengths; keep p
where |(z - mean z) / std z| <= tau (std unbiased). The reference divides by zero when at least
half of the scores tie (MAD = 0, e.g. n_prompts <= 2) and its loss becomes NaN; here a zero MAD
or std counts as 1, which keeps the scale-free standardisation well defined. (The final
standardisation undoes any affine map, so the mask equals that of |standardised score| <= tau;
the median/MAD step matters only through rounding and the MAD = 0 case.)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from biomedjax.methods import coop, options, zeroshot
from biomedjax.methods.base import Backbone, Task
from biomedjax.models.clip import l2_normalize


@dataclasses.dataclass(frozen=True)
class BiomedCoOpOptions(coop.CoOpOptions):
  """CoOp's options plus the teacher's; defaults are the reference's BTMRI few-shot values."""
  n_prompts: int = 50        # the first n LLM prompts of each class
  lambda_sccm: float = 0.5   # weight of the MSE to the mean LLM text features
  lambda_kdsp: float = 0.25  # weight of the KL to the selected-prompt teacher
  tau: float = 1.5           # outlier threshold on the standardised robust z-score
  text_dropout: bool = True  # reference quirk: BERT in training mode on the learned prompts


Options = BiomedCoOpOptions


def lower_median(x: jax.Array) -> jax.Array:
  """``torch.median`` of a vector: the lower of the two middle values for even lengths."""
  return jnp.sort(x)[(x.shape[0] - 1) // 2]


def select_prompts(scores: jax.Array, tau: float) -> jax.Array:
  """(P,) prompt scores -> (P,) bool, True for prompts kept by the robust z-score rule."""
  if scores.shape[0] < 2:
    return jnp.ones(scores.shape, bool)
  med = lower_median(scores)
  mad = lower_median(jnp.abs(scores - med))
  z = (scores - med) / jnp.where(mad > 0, mad, 1.0)
  std = jnp.std(z, ddof=1)
  return jnp.abs((z - z.mean()) / jnp.where(std > 0, std, 1.0)) <= tau


def teacher_logits(image: jax.Array, llm_features: jax.Array, scale, tau: float):
  """Zero-shot logits of the teacher for normalised image features (B, D); -> (logits, keep).

  llm_features: (n_cls, P, D) normalised. Each prompt index is scored by how confidently its
  prompts classify the batch; the kept prompts' features are averaged per class.
  """
  per_prompt = scale * jnp.einsum("bd,cpd->bcp", image, llm_features)
  keep = select_prompts(per_prompt.max(axis=1).mean(axis=0), tau)
  w = keep.astype(llm_features.dtype)
  teacher_text = l2_normalize(jnp.einsum("p,cpd->cd", w, llm_features) / w.sum())
  return scale * image @ teacher_text.T, keep


def kl_per_logit(student_logits: jax.Array, teacher_logits: jax.Array) -> jax.Array:
  """``kl_div(log_softmax(student), log_softmax(teacher), "sum", log_target=True) / numel``."""
  log_q = jax.nn.log_softmax(teacher_logits, axis=-1)
  log_p = jax.nn.log_softmax(student_logits, axis=-1)
  return jnp.sum(jnp.exp(log_q) * (log_q - log_p)) / student_logits.size


def llm_prompts_of(task: Task, n_prompts: int) -> list[tuple[str, ...]]:
  """The first ``n_prompts`` LLM prompts of every class; missing or short classes are errors."""
  if task.llm_prompts is None:
    raise ValueError("biomedcoop needs LLM prompt ensembles: set config.data.llm_prompts to a "
                     "prompt_ensembles.json file (configs/biomedcoop.py:prompts=PATH or "
                     "--config.data.llm_prompts=PATH); it is empty")
  if n_prompts < 1:
    raise ValueError(f"biomedcoop n_prompts={n_prompts}: must be >= 1")
  return zeroshot.class_prompts(task, n_prompts)


class BiomedCoOp(coop.CoOp):
  """CoOp's prompts and eval logits; the teacher only changes the training loss."""
  name = "biomedcoop"
  options_type = BiomedCoOpOptions
  task_kinds = ("multiclass",)
  kind_note = "its KDSP term is a KL between softmax distributions"
  # Every BiomedCoOp trainer registers the whole wrapper (``register_model("prompt_learner",
  # self.model, ...)``: biomedcoop_pmcclip.py:330, _biomedclip.py:288, _clip.py:269,
  # _pubmedclip.py:305), so Dassl's ``set_model_mode("train")`` puts the frozen tower in train
  # mode, and each step runs it twice on the batch (:209 the student's features, :223 the
  # teacher's under ``no_grad``): two BatchNorm updates per step on a ResNet tower (PMC-CLIP).
  tower_train_passes = 2

  def __init__(self, backbone: Backbone, task: Task, opts: BiomedCoOpOptions, objective=None):
    self.llm_prompts = llm_prompts_of(task, opts.n_prompts)  # a bad prompt file fails first
    super().__init__(backbone, task, opts, objective)

  def prepare(self, backbone_params) -> dict:
    texts = [p for ps in self.llm_prompts for p in ps]
    feats = zeroshot.encode_prompts(self.backbone, backbone_params, texts)
    llm = feats.reshape(self.learner.n_cls, self.opts.n_prompts, -1)
    return {**super().prepare(backbone_params), "llm_features": llm,
            "llm_mean": l2_normalize(llm.mean(axis=1))}

  def train_logits(self, trainable, frozen, batch, rng):
    text = self.text_features(trainable, frozen, rng if self.opts.text_dropout else None)
    logits = self.backbone.cosine_logits(frozen["backbone"], batch["features"], text)
    return logits, {"text_features": text, "image": l2_normalize(batch["features"])}

  def regularizer(self, trainable, frozen, batch, logits, extras):
    """lambda_SCCM * MSE(t, mean LLM features) + lambda_KDSP * KL(teacher || student)."""
    scale = self.backbone.logit_scale(frozen["backbone"])
    teacher, keep = teacher_logits(extras["image"], frozen["llm_features"], scale, self.opts.tau)
    sccm = jnp.mean((extras["text_features"] - frozen["llm_mean"]) ** 2)
    kdsp = kl_per_logit(logits, jax.lax.stop_gradient(teacher))
    reg = self.opts.lambda_sccm * sccm + self.opts.lambda_kdsp * kdsp
    return reg, {"sccm": sccm, "kdsp": kdsp, "kept_prompts": keep.sum()}


def build(backbone: Backbone, task: Task, cfg=None, objective=None) -> BiomedCoOp:
  return BiomedCoOp(backbone, task, options.read(BiomedCoOpOptions, cfg, "biomedcoop"), objective)
