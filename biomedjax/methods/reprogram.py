"""What the visual-reprogramming methods (VP, AR, AttrVR, BioMedVR) share: programs on pixels.

A reprogramming method trains only input-space programs (and BioMedVR's gate) in front of the
frozen image tower. It declares ``inputs = "pixels"``: the engine hands it ``batch["image"]``
float32 in [0, 1], (B, S, S, 3) NHWC at ``config.data.image_size`` = S, un-normalised (the
program standardises, ``biomedjax/methods/programs.py``). ``program_images(trainable, images)``
returns the (P, B, canvas, canvas, 3) standardised images the tower receives, one slice per
program; ``image_features`` runs all P of them through the tower as ONE batched forward of P * B
images and returns (P, B, D) unnormalised features.

Trainable layout: ``{name: (3, canvas, canvas) float32}`` for each name in ``program_names``
(channel-first, as the reference's ``nn.Parameter``). ``parameter_counts`` reports the stored
entries and the effective ones (entries under the frame mask; the rest never receive a gradient
and there is no weight decay).

The VR protocol's schedule (per-step cosine from lr to 0 without warmup) is the optimizer
config's ``schedule="cosine_steps"`` (``biomedjax/train/optim.py``), set by the config files.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from biomedjax.methods import attributes, base, programs


@dataclasses.dataclass(frozen=True)
class ProgramOptions:
  program: str = "padding"        # "padding" (AR/AttrVR/BioMedVR) | "watermark" (VP)
  image_size: int = 192           # S: the side of the image the program receives
  border: int = 16                # frame width in pixels (padding: 16 around 192; VP: 30)
  program_init: str = "zeros"     # "zeros" (reference) | "normal" (N(0, 1))


@dataclasses.dataclass(frozen=True)
class AttributeOptions(ProgramOptions):
  attributes_dir: str = ""        # folder with <attributes_dataset>_{des,dist,confuse}.json
  attributes_dataset: str = ""    # the files' dataset key (btmri, knee_xray, ...)
  m: int = 20                     # sentences drawn per class and head
  k: int = 3                      # the k best sentences averaged per image and class
  attr_sampling: str = "reference"  # "reference" (m draws, with replacement when n <= m)
                                    # | "unique" (each sentence once, k = min(k, n))
  attr_lambda: float = 0.5        # logits = lambda * des + (1 - lambda) * dist
  attr_seed: int = 1              # seeds the sentence draws; the config files set the run seed
  # Ablation: des/dist read from this folder instead (the corrupted positive attributes,
  # ablations/attributes_corrupted/poscorrupt_r<r>_*/); "" = attributes_dir
  pos_attributes_dir: str = ""


class ProgramMethod(base.Method):
  """Base of the reprogramming methods: programs, the batched tower pass, parameter counts."""
  inputs = "pixels"
  stages = ("train",)
  vocabulary_words = staticmethod(attributes.vocabulary_words)  # VR attribute sentences
  program_names: tuple[str, ...] = ("program",)

  def __init__(self, backbone, task, opts, objective=None):
    super().__init__(backbone, task, opts, objective)
    self.canvas = backbone.cfg.vision.image_size
    # (canvas, canvas, 1) 0/1 frame; a program that does not fit is an error here, at build
    self.mask = programs.frame_mask(opts.program, opts.image_size, opts.border, self.canvas)
    if opts.program_init not in programs.INITS:
      raise ValueError(f"config.method.program_init={opts.program_init!r}: use one of "
                       f"{programs.INITS}")
    self.sentences: dict[str, list[list[str]]] = {}

  def init_programs(self, rng) -> dict:
    keys = jax.random.split(rng, len(self.program_names))
    return {name: programs.init_program(key, self.opts.program_init, self.canvas)
            for name, key in zip(self.program_names, keys)}

  def init(self, rng, frozen):
    return self.init_programs(rng)

  def program_images(self, trainable, images01):
    """[0, 1] images (B, S, S, 3) -> (P, B, canvas, canvas, 3) standardised, one per program."""
    if images01.shape[1:3] != (self.opts.image_size, self.opts.image_size):
      raise ValueError(f"method {self.name!r} expects {self.opts.image_size}-pixel images "
                       f"(config.method.image_size) but got {images01.shape[1:3]}; set "
                       f"config.data.image_size={self.opts.image_size}")
    cfg = self.backbone.cfg
    return jnp.stack([programs.apply(self.opts.program, images01, trainable[name], self.mask,
                                     cfg.image_mean, cfg.image_std)
                      for name in self.program_names])

  def image_features(self, trainable, frozen, images01):
    """(P, B, D) unnormalised features of every program: one tower pass over P * B images."""
    x = self.program_images(trainable, images01)
    p, b = x.shape[:2]
    feats = self.backbone.encode_pixels(frozen["backbone"], x.reshape((p * b,) + x.shape[2:]))
    return feats.reshape(p, b, -1)

  def scale(self, frozen):
    return self.backbone.logit_scale(frozen["backbone"])

  def parameter_counts(self, trainable) -> dict:
    stored = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(trainable))
    per_program = programs.effective_size(self.mask)
    others = stored - sum(int(np.prod(np.shape(trainable[n]))) for n in self.program_names)
    return {"stored": stored, "effective": len(self.program_names) * per_program + others}

  def transfer(self, trainable, novel):
    return trainable  # programs act on images only; the novel method encodes its own text

  def read_attributes(self, heads, sources=None) -> dict[str, list[list[str]]]:
    """The sampled sentences of ``heads`` from the configured files (see attributes.py);
    ``sources``: {head: (folder, file suffix)} read elsewhere (ablations)."""
    o = self.opts
    key = o.attributes_dataset
    if not key:
      raise ValueError(f"method {self.name!r}: set --config.method.attributes_dataset (the "
                       f"attribute files' dataset key, e.g. 'btmri')")
    sources = dict(sources or {})
    if o.pos_attributes_dir:
      sources.update({h: (o.pos_attributes_dir, h) for h in ("des", "dist")})
    return attributes.read_heads(o.attributes_dir, key, heads, self.task.classnames,
                                 self.backbone.tokenizer, o.m, o.attr_seed, o.attr_sampling,
                                 sources)


def check_attribute_options(opts) -> None:
  if opts.attr_sampling not in attributes.SAMPLINGS:
    raise ValueError(f"config.method.attr_sampling={opts.attr_sampling!r}: use one of "
                     f"{attributes.SAMPLINGS}")
  if opts.k < 1:
    raise ValueError(f"config.method.k={opts.k}: average at least one sentence")
  if not 0.0 <= opts.attr_lambda <= 1.0:
    raise ValueError(f"config.method.attr_lambda={opts.attr_lambda}: a weight in [0, 1]")
