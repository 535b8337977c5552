"""The contract between a method and the training engine.

A method is an object built once per run from the frozen backbone, the task, its options and the
data objective. It owns no parameters: the engine holds the trainable pytree (``init`` or
``fit``), the frozen pytree (``{"backbone": params, **prepare(params)}``) and the optimizer state,
and calls the method's pure functions inside ``jax.jit``. So the engine never branches on method
names, and what trains is exactly the pytree the method returns.

What a method declares, and what the engine does with it:

* ``inputs``: ``"features"`` — the engine runs the frozen image tower (inside the jitted step, on
  the augmented batch) and the method receives ``batch["features"]`` (B, D), unnormalised; at eval
  the features of the eval transform, encoded once per run. ``"pixels"`` — the method receives
  ``batch["image"]`` in [0, 1] (float32, B×H×W×3) and runs the tower itself through
  ``Backbone.image_features`` (which normalises on the device), e.g. to add a learned program
  to the raw image or to fine-tune the tower.
* ``stages``: ``("fit",)`` training-free (a closed form on cached features), ``("train",)``
  gradient steps from ``init``, ``("fit", "train")`` gradient steps starting from ``fit``'s result
  (e.g. Tip-Adapter-F builds its cache, then fine-tunes it).
* ``trainable_backbone``: top-level backbone keys (e.g. ``("visual",)``) that ``init`` copies into
  the trainable pytree; the engine then removes them from ``frozen["backbone"]``, so the rest stays
  frozen and is never donated. Only full fine-tuning uses it.
* ``fit_views``: for a "fit" stage, how many augmented views of the training set the engine
  encodes (the adapter harness's RandomResizedCrop + flip, ``biomedjax/data/views.py``) and
  passes to ``fit`` as (V, N, D) features with an ``rng``; 0 = the eval-transform features.
* ``tower_train_passes``: how many times per step the reference runs the frozen image tower in
  train mode (its trainer registers the whole CLIP wrapper with Dassl, whose ``run_epoch`` calls
  ``.train()`` on it); 0 = eval mode (only the prompt learner registered). For a tower with
  BatchNorm the engine then normalises training batches with their own statistics and carries
  the drifting running statistics as run state (``biomedjax/train/tower.py``), unless
  ``--config.model.tower_mode=eval``.
* ``packs_runs``: ``fit_runs`` fits several seeds of one setting as one vmapped computation
  (``launch.py --sweep=packed``, biomedjax/train/fit_pack.py); False: runs go one by one.
* ``task_kinds``: the task kinds the method is defined for; building it for another kind is an
  error naming the method and the kind (e.g. a softmax-only regulariser on a multilabel task).
* ``options_type``: the frozen dataclass of its options (``config.method.*``, read strictly by
  ``read_options``; ``build`` = read, then construct). ``biomedjax.methods.METHODS`` maps config
  names to these classes.
* ``families``: the backbone families (``biomedjax.models.families``) it is defined for; empty
  = every family. The contract test runs it on those only.
* ``lr_packs``: whether ``optim.lr`` may differ inside a packed sweep (False for a method whose
  ``optimizer`` hook builds its own optimizer).
* What the report and the engine need to know about its results, declared here rather than
  looked up by name: ``k_independent`` (no training image is used: one "any K" column),
  ``harness_protocol`` (BiomedCoOp's adapter harness: 1.96·std/√3 over three runs),
  ``vocabulary_words(method_cfg)`` (words a random-weight tokenizer must hold whole, e.g. the
  VR attribute sentences), ``study_name``/``study_scores`` (its setting in the multilabel study).

The options contract: a method reads its float options from ``self.opts`` when it computes
(in ``prepare``, ``init``, ``loss``, ``logits``...), never copies them into attributes or
closures at construction. A packed sweep (``biomedjax.train.packed``) trains several points as
one program by swapping ``opts`` for one holding traced floats; a copied value would silently
train every point with the first point's. tests/methods/test_method_contract.py checks it: a method
whose ``opts`` are swapped after construction computes what one built with them computes.

The data term of the training loss is not the method's choice: ``objective`` (built from
``config.loss`` by ``biomedjax.objectives``) turns logits and labels into a loss; a method adds
only its own regularisers (``regularizer``). Hooks with defaults here: ``loss`` (objective +
regulariser), ``value_and_grad`` (``jax.value_and_grad`` of ``loss``; ProGrad overrides it) and
``transfer`` (base-to-novel; refuses unless the method says its trainable is class-agnostic) and
``parameter_counts`` (stored vs effective trainable entries, reported in results.json).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from biomedjax import objectives
from biomedjax.methods import options
from biomedjax.models.backbone import COMPUTE_DTYPES, Backbone, unit_range  # noqa: F401
from biomedjax.train.optim import make_optimizer

Pytree = Any
INPUTS = ("features", "pixels")
STAGES = (("fit",), ("train",), ("fit", "train"))
KINDS = objectives.KINDS


@dataclasses.dataclass(frozen=True)
class Task:
  """What is being classified: class names in label order and the text resources for them.

  ``kind``: "multiclass" (integer labels, one class per image) or "multilabel" (float32
  multi-hot labels (C,), any number of findings per image).
  """
  classnames: tuple[str, ...]
  template: str = "a photo of a {}."                 # the hand-crafted prompt of the reference
  llm_prompts: dict[str, tuple[str, ...]] | None = None  # BiomedCoOp prompt ensembles
  kind: str = "multiclass"

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"task kind {self.kind!r}: use one of {KINDS}")

  @property
  def num_classes(self) -> int:
    return len(self.classnames)

  def prompts(self) -> list[str]:
    """The hand-crafted prompt of every class; '_' in names reads as a space (reference)."""
    return [self.template.format(c.replace("_", " ")) for c in self.classnames]


class FeatureSet(NamedTuple):
  """Cached, unnormalised image features of one split and their labels (host numpy)."""
  features: np.ndarray
  labels: np.ndarray


class Method:
  """Base class of every method: the declarations and the hooks' defaults (see module doc)."""
  name = ""
  inputs = "features"
  stages = ("train",)
  trainable_backbone: tuple[str, ...] = ()
  fit_views = 0
  tower_train_passes = 0  # train-mode tower forwards per step in the reference (0: eval mode)
  fit_needs_data = True  # False: ``fit`` gets no features (zero-shot), none are encoded for it
  packs_runs = False  # True: ``fit_runs`` fits the runs of a setting as ONE vmapped computation
  task_kinds: tuple[str, ...] = ("multiclass",)
  # Why other kinds are refused, for the error message (e.g. "its KL term needs a softmax").
  kind_note = ""
  study_name = ""  # the setting's name in the multilabel study's tables (default: ``name``)
  study_scores = "head"  # what its multilabel test scores are: "head" logits or "zeroshot" dots
  options_type: type | None = None  # the options dataclass (``read_options``)
  families: tuple[str, ...] = ()  # backbone families it is defined for; () = all
  k_independent = False  # its result does not depend on K (no training image is used)
  harness_protocol = False  # a method of BiomedCoOp's adapter harness (its std convention)
  lr_packs = True  # False: its ``optimizer`` hook builds its own schedule; a pack cannot vary LR

  @classmethod
  def read_options(cls, cfg):
    """``config.method`` (a ConfigDict, dict or None) -> the typed options, strictly."""
    return options.read(cls.options_type, cfg, cls.name)

  @classmethod
  def build(cls, backbone: "Backbone", task: "Task", cfg=None, objective=None) -> "Method":
    """The method for ``task`` from its config block (what the engine calls)."""
    return cls(backbone, task, cls.read_options(cfg), objective)

  @staticmethod
  def vocabulary_words(method_cfg) -> list[str]:
    """Words of its settings a random-weight model's vocabulary must hold as whole tokens,
    beyond the config's string options (e.g. attribute sentences read from files)."""
    return []

  def __init__(self, backbone: Backbone, task: Task, opts, objective=None):
    if task.kind not in self.task_kinds:
      raise ValueError(f"method {self.name!r} is defined for {'/'.join(self.task_kinds)} tasks, "
                       f"not {task.kind!r}{': ' + self.kind_note if self.kind_note else ''}")
    family = getattr(getattr(backbone, "cfg", None), "family", None)
    if self.families and family not in self.families:
      raise ValueError(f"method {self.name!r} is defined for the {'/'.join(self.families)} "
                       f"backbone famil(ies), not {family!r}")
    self.backbone = backbone
    self.task = task
    self.opts = opts
    self.objective = objective or objectives.default(task)

  # -- declared facts derived from the above ----------------------------------------------------
  @property
  def trains(self) -> bool:
    return "train" in self.stages

  @property
  def fits(self) -> bool:
    return "fit" in self.stages

  def batch_inputs(self, batch: dict):
    """The part of a batch ``logits`` reads: features or [0, 1] images (``inputs``)."""
    return batch["features"] if self.inputs == "features" else batch["image"]

  # -- hooks ---------------------------------------------------------------------------------
  def prepare(self, backbone_params) -> dict:
    """Constants computed once per run from the frozen backbone (e.g. template text features).
    Traceable (jnp only), so ``jax.eval_shape`` can check a full-size method without weights."""
    return {}

  def init(self, rng: jax.Array, frozen: Pytree) -> Pytree:
    """The initial trainable pytree (methods with a "train" stage and no "fit")."""
    return {}

  def fit(self, frozen: Pytree, train: FeatureSet, val: FeatureSet | None) -> Pytree:
    """The trainable pytree in closed form from cached features (methods with a "fit" stage)."""
    raise NotImplementedError(f"method {self.name!r} declares no 'fit' stage")

  def fit_runs(self, frozen: Pytree, trains: list, val: FeatureSet | None, rngs: list) -> list:
    """``fit`` for runs of one setting that differ only in their seed (biomedjax/train/
    fit_pack.py): run r's training features ``trains[r]`` and key ``rngs[r]`` (passed to ``fit``
    only with ``fit_views``), ``val`` shared. Default: one ``fit`` after another; a method whose
    fit is jittable overrides it with one vmapped computation and sets ``packs_runs``."""
    if self.fit_views:
      return [self.fit(frozen, t, val, rng=r) for t, r in zip(trains, rngs)]
    return [self.fit(frozen, t, val) for t in trains]

  def logits(self, trainable: Pytree, frozen: Pytree, inputs: jax.Array) -> jax.Array:
    """(B, num_classes) eval logits from features (B, D) or [0, 1] images, per ``inputs``."""
    raise NotImplementedError

  def train_logits(self, trainable, frozen, batch, rng) -> tuple[jax.Array, dict]:
    """Training-time logits and extras for the objective/regulariser (default: eval logits).

    Extras a calibration term may use: ``text_features`` (C, D), normalised."""
    return self.logits(trainable, frozen, self.batch_inputs(batch)), {}

  def regularizer(self, trainable, frozen, batch, logits, extras) -> tuple[jax.Array, dict]:
    """The method's own terms added to the data objective; none by default."""
    return jnp.float32(0.0), {}

  def loss(self, trainable, frozen, batch, rng) -> tuple[jax.Array, dict]:
    """objective(logits, labels) + regularizer: the scalar the engine descends."""
    logits, extras = self.train_logits(trainable, frozen, batch, rng)
    data, metrics = self.objective(logits, batch["label"], **extras)
    reg, reg_metrics = self.regularizer(trainable, frozen, batch, logits, extras)
    if reg_metrics:
      metrics = {**metrics, "data_loss": data, **reg_metrics}
    return data + reg, metrics

  def optimizer(self, optim_cfg, steps_per_epoch: int):
    """(optax transform, step -> lr) the engine trains with: ``config.optim`` by default. A
    method whose reference changes optimizers mid-run (e.g. fine-tuning) overrides this."""
    return make_optimizer(optim_cfg, steps_per_epoch)

  def parameter_counts(self, trainable) -> dict:
    """{"stored": entries of the trainable pytree, "effective": those that can ever move}.
    Default: both the stored count; a method with masked entries (a program frame) overrides."""
    n = sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(trainable))
    return {"stored": n, "effective": n}

  def value_and_grad(self, trainable, frozen, batch, rng):
    """((loss, aux), d loss / d trainable): what the engine's step applies."""
    return jax.value_and_grad(self.loss, has_aux=True)(trainable, frozen, batch, rng)

  def transfer(self, trainable: Pytree, novel: "Method") -> Pytree:
    """The trainable to evaluate ``novel`` (the same method built for the novel classes) with.

    Default: refuse, because a pytree with per-class leaves (class-specific context, a linear
    head, an adapter's cache) has nothing to say about classes it never saw. Methods whose
    trainable is class-agnostic override this and return it unchanged."""
    raise ValueError(f"method {self.name!r} cannot be evaluated on novel classes: its trained "
                     "state is per class; base-to-novel needs a class-agnostic method "
                     "(e.g. CoOp with csc=False)")
