"""BioMedVR (Liu et al., ECCV 2026): a mixture of two prompt experts + confusion suppression.

Reference: JXLiu-AI/BioMedVR ``experiments/biomedvr.py`` (a fork of AttrVR with the same
programs, heads and loop).

* Two padding programs δ+ and δ− (S = 192 image zero-padded to 224, sigmoid(P) * M on the
  16-pixel frame, then standardised; ``programs.py``). Both run through the frozen image tower as
  ONE batched forward of 2B images (``program_images`` order: (δ+, δ−)).
* Positive expert: ``pos = λ L_des(f+) + (1 − λ) L_dist(f+)`` with λ = ½ fixed in the reference
  (its ``--alpha`` is parsed but unused); negative expert: ``neg = L_confuse(f−)``. Each L is the
  attribute head (m = 20 sentences per class, mean of the top k = 3 of ``scale * cos``;
  ``vr_heads.py``).
* Gate: ``w = softmax(g)``, g (2,) initialised (1, 1), one global pair;
  ``fused = w+ pos + w− neg`` is the prediction in training and test. Options (the reference's
  rebuttal variants, not canonical): ``gating="per_class"``, g (C, 2) initialised 1; and
  ``gating="per_sample"``, a 512→128→ReLU→2 MLP on the normalised δ+ feature (torch Linear
  default init), w = softmax of its output per image.
* Loss: ``CE(fused, y) + β CS`` with ``CS = mean_b relu(max_c neg[b, c] − fused[b, y_b] +
  margin)`` clamped at 1e3 (never binds), β = 0.3, margin 0.5 (logit units). The max runs over
  ALL classes, y included (the reference's code); ``cs_exclude_true=True`` takes it over c ≠ y.

* Negative expert (``negative``): "confuse" reads ``<key>_confuse.json`` (reference);
  "random" / "shuffled" read the negative-attribute ablation files ``<key>_{random,shuffled}.json``
  from ``neg_attributes_dir`` (``attributes_neg_variants/neg_{random,shuffled}/``); "zeros" sets
  neg = 0, what the reference does when no confuse file exists (``experiments/biomedvr.py:146-151,
  190-196``: ``neg_logits = torch.zeros_like(pos_logits)``, the CS hinge still applied to it),
  so for the natural-image datasets and for the "without the negative expert" ablation. δ− is
  still stored and encoded (as the reference) but gets no gradient: it is not counted effective.
* Ablations, each one option: ``pos_attributes_dir`` (corrupted des/dist), ``negative``,
  ``beta=0`` (no confusion-suppression loss), ``gating`` ("per_class", "per_sample", or "fixed":
  w = (½, ½), no trainable gate). ``configs/biomedvr_ablations.py`` names them.

Trainable: ``{"program_pos": (3, 224, 224), "program_neg": (3, 224, 224), "gate": (2,)}`` (gate
(C, 2) for per_class; a dict {w1 (D, 128), b1, w2 (128, 2), b2} for per_sample; none for fixed).
Stored parameters 2 * 150,528 + 2 = 301,058, effective 2 * 39,936 + 2 = 79,874.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from biomedjax.methods import options, programs, reprogram, vr_heads
from biomedjax.models.clip import l2_normalize

GATINGS = ("shared", "per_class", "per_sample", "fixed")
NEGATIVES = ("confuse", "random", "shuffled", "zeros")
GATE_HIDDEN = 128
CS_CLAMP = 1e3


@dataclasses.dataclass(frozen=True)
class Options(reprogram.AttributeOptions):
  beta: float = 0.3               # weight of the confusion-suppression hinge
  margin: float = 0.5             # hinge margin in logit units
  cs_exclude_true: bool = False   # False: max over all classes (reference); True: over c != y
  gating: str = "shared"          # "shared" (reference) | "per_class" | "per_sample" | "fixed"
  negative: str = "confuse"       # "confuse" (reference) | "random" | "shuffled" | "zeros"
  neg_attributes_dir: str = ""    # folder of <key>_{random,shuffled}.json; "" = attributes_dir


def gate_weights(gate, gating: str, pos_feats=None):
  """Softmax expert weights: (2,) shared, (C, 2) per class or (B, 2) per sample."""
  if gating == "fixed":
    return jnp.full((2,), 0.5, jnp.float32)
  if gating == "per_sample":
    h = jax.nn.relu(l2_normalize(pos_feats) @ gate["w1"] + gate["b1"])
    return jax.nn.softmax(h @ gate["w2"] + gate["b2"], axis=-1)
  return jax.nn.softmax(gate, axis=-1)


def fuse(pos, neg, w, gating: str):
  """``w+ pos + w− neg`` for each gating's weight shape; (B, C) each."""
  if gating in ("shared", "fixed"):
    return w[0] * pos + w[1] * neg
  if gating == "per_class":
    return w[None, :, 0] * pos + w[None, :, 1] * neg
  return w[:, :1] * pos + w[:, 1:] * neg


def confusion_suppression(fused, neg, labels, margin: float, exclude_true: bool = False):
  """``mean_b relu(max_c neg[b, c] − fused[b, y_b] + margin)``, clamped at 1e3."""
  if exclude_true:
    neg = jnp.where(jax.nn.one_hot(labels, neg.shape[-1], dtype=bool), -jnp.inf, neg)
  true = jnp.take_along_axis(fused, labels[:, None], axis=-1)[:, 0]
  hinge = jax.nn.relu(neg.max(-1) - true + margin)
  return jnp.minimum(hinge.mean(), CS_CLAMP)


def torch_linear(rng, fan_in: int, fan_out: int) -> dict:
  """torch.nn.Linear's default init: U(±1/sqrt(fan_in)) for weight and bias."""
  bound = 1.0 / math.sqrt(fan_in)
  kw, kb = jax.random.split(rng)
  return {"w": jax.random.uniform(kw, (fan_in, fan_out), jnp.float32, -bound, bound),
          "b": jax.random.uniform(kb, (fan_out,), jnp.float32, -bound, bound)}


class BioMedVR(reprogram.ProgramMethod):
  name = "biomedvr"
  options_type = Options
  program_names = ("program_pos", "program_neg")

  def __init__(self, backbone, task, opts: Options, objective=None):
    reprogram.check_attribute_options(opts)
    if opts.gating not in GATINGS:
      raise ValueError(f"config.method.gating={opts.gating!r}: use one of {GATINGS}")
    if opts.program != "padding":
      raise ValueError(f"config.method.program={opts.program!r}: BioMedVR's experts are padding "
                       "programs")
    if opts.negative not in NEGATIVES:
      raise ValueError(f"config.method.negative={opts.negative!r}: use one of {NEGATIVES}")
    super().__init__(backbone, task, opts, objective)
    if opts.negative == "zeros":
      self.sentences = self.read_attributes(("des", "dist"))
    else:
      where = (opts.neg_attributes_dir or opts.attributes_dir, opts.negative)
      self.sentences = self.read_attributes(("des", "dist", "confuse"), {"confuse": where})

  def prepare(self, backbone_params):
    return vr_heads.encode_heads(self.backbone, backbone_params, self.sentences)

  def init(self, rng, frozen):
    k_prog, k_gate = jax.random.split(rng)
    out = self.init_programs(k_prog)
    if self.opts.gating == "shared":
      out["gate"] = jnp.ones((2,), jnp.float32)
    elif self.opts.gating == "fixed":
      pass
    elif self.opts.gating == "per_class":
      out["gate"] = jnp.ones((self.task.num_classes, 2), jnp.float32)
    else:
      k1, k2 = jax.random.split(k_gate)
      dim = self.backbone.cfg.embed_dim
      l1, l2 = torch_linear(k1, dim, GATE_HIDDEN), torch_linear(k2, GATE_HIDDEN, 2)
      out["gate"] = {"w1": l1["w"], "b1": l1["b"], "w2": l2["w"], "b2": l2["b"]}
    return out

  def _head(self, frozen, head, feats):
    return vr_heads.attribute_logits(feats, frozen[head], vr_heads.valid_mask(
        self.sentences[head]), self.scale(frozen), self.opts.k)

  def experts(self, trainable, frozen, images01):
    """(pos, neg, w): the two experts' (B, C) logits and the gate weights."""
    f_pos, f_neg = self.image_features(trainable, frozen, images01)
    lam = self.opts.attr_lambda
    pos = lam * self._head(frozen, "des", f_pos) + (1 - lam) * self._head(frozen, "dist", f_pos)
    neg = (jnp.zeros_like(pos) if self.opts.negative == "zeros" else
           self._head(frozen, "confuse", f_neg))
    return pos, neg, gate_weights(trainable.get("gate"), self.opts.gating, f_pos)

  def parameter_counts(self, trainable) -> dict:
    counts = super().parameter_counts(trainable)
    if self.opts.negative == "zeros":  # δ− gets no gradient
      counts["effective"] -= programs.effective_size(self.mask)
    return counts

  def train_logits(self, trainable, frozen, batch, rng):
    pos, neg, w = self.experts(trainable, frozen, batch["image"])
    return fuse(pos, neg, w, self.opts.gating), {"pos": pos, "neg": neg}

  def logits(self, trainable, frozen, images01):
    pos, neg, w = self.experts(trainable, frozen, images01)
    return fuse(pos, neg, w, self.opts.gating)

  def loss(self, trainable, frozen, batch, rng):
    fused, extras = self.train_logits(trainable, frozen, batch, rng)
    ce, metrics = self.objective(fused, batch["label"])
    cs = confusion_suppression(fused, extras["neg"], batch["label"], self.opts.margin,
                               self.opts.cs_exclude_true)
    return ce + self.opts.beta * cs, {**metrics, "ce": ce, "cs": cs}

  def transfer(self, trainable, novel):
    if self.opts.gating == "per_class":
      raise ValueError("biomedvr with --config.method.gating='per_class' has a gate per class "
                       "and cannot be evaluated on novel classes; use gating='shared'")
    return trainable


def build(backbone, task, cfg=None, objective=None) -> BioMedVR:
  return BioMedVR(backbone, task, options.read(Options, cfg, "biomedvr"), objective)
