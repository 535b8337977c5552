"""A trained method as one file, and the classifier it rebuilds: what predict and export use.

Every run ends by writing ``<workdir>/trained_state.safetensors``: the trainable pytree (CoOp's
context, the linear probe's ``W``, ``b`` and ``C``, an adapter's weights; empty for zero-shot)
as safetensors tensors named by their pytree path (``ctx``, ``meta_net/linear1/kernel``), and in
the file's metadata everything needed to rebuild the method around it: the method's config
block, the class names and prompt template (and LLM prompts), the eval image size, and the
backbone (the converted directory with its manifest sha256, or the random preset with the words
of its generated vocabulary, which ``init_params`` reproduces exactly). A run whose frozen tower
trained in the reference's train mode (``biomedjax/train/tower.py``) also stores the drifted
BatchNorm statistics it was evaluated with, as tensors under ``@backbone_state/`` (e.g.
``@backbone_state/batch_stats/visual/bn1/mean``); ``load`` keeps them out of the trainable pytree,
``load_backbone_state`` reads them, and ``TrainedClassifier`` predicts with them.

``python -m biomedjax.tools.export`` copies that file elsewhere; ``TrainedClassifier.load(path)``
rebuilds backbone + method + state and predicts on image files or preprocessed arrays, with
the same preprocessing and the same feature/logit functions as the run's evaluation.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile

import numpy as np

from biomedjax import pytree_paths

STATE_FILE = "trained_state.safetensors"
FORMAT = "biomedjax-trained-method"
_META_KEY = "biomedjax"
BACKBONE_STATE = "@backbone_state"  # not a pytree key a method can have ('@' starts no name)


class TrainedStateError(ValueError):
  """A state file that cannot be used here; the message names the file and what is wrong."""


def _flatten(tree, prefix="") -> dict[str, np.ndarray]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      if "/" in str(k):
        raise TrainedStateError(f"pytree key {k!r} contains '/'")
      out.update(_flatten(v, f"{prefix}{k}/"))
    return out
  if tree is None:
    return {}
  return {prefix.rstrip("/"): np.ascontiguousarray(np.asarray(tree))}


def save(path, trainable, meta: dict, backbone_state=None) -> pathlib.Path:
  """Writes the trainable pytree (nested dicts of arrays) + ``meta`` atomically; a non-empty
  ``backbone_state`` (the run's drifted tower statistics) under ``@backbone_state/``."""
  from safetensors.numpy import save_file
  import jax
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tensors = _flatten(jax.device_get(trainable))
  if backbone_state:
    tensors.update(_flatten(jax.device_get(backbone_state), f"{BACKBONE_STATE}/"))
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
  os.close(fd)
  try:
    save_file(tensors, tmp, metadata={_META_KEY: json.dumps({"format": FORMAT, **meta})})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def load(path) -> tuple[dict, dict]:
  """(trainable pytree of numpy arrays, meta) of a state file."""
  tree, meta = _load(path)
  tree.pop(BACKBONE_STATE, None)
  return tree, meta


def load_backbone_state(path) -> dict:
  """The tower state a run was evaluated with (``{"batch_stats": ...}``), or {} (eval mode)."""
  return _load(path)[0].get(BACKBONE_STATE, {})


def _load(path) -> tuple[dict, dict]:
  from safetensors import safe_open
  path = pathlib.Path(path)
  if not path.is_file():
    raise TrainedStateError(f"{path}: no such file (a run writes {STATE_FILE} into its workdir "
                            "when it finishes)")
  try:
    with safe_open(str(path), framework="numpy") as f:
      meta = json.loads((f.metadata() or {}).get(_META_KEY, "{}"))
      flat = {k: f.get_tensor(k) for k in f.keys()}
  except Exception as e:  # safetensors raises its own error types
    raise TrainedStateError(f"{path}: not a safetensors file ({type(e).__name__}: {e})") from e
  if meta.get("format") != FORMAT:
    raise TrainedStateError(f"{path}: not a biomedjax trained-method file (no {_META_KEY!r} "
                            "metadata)")
  return pytree_paths.unflatten(flat), meta


def summary(trainable) -> dict:
  """For results.json: the file, each tensor's shape, and the scalars themselves (the linear
  probe's selected ``C``)."""
  import jax
  flat = _flatten(jax.device_get(trainable))
  return {"file": STATE_FILE, "shapes": {k: list(v.shape) for k, v in flat.items()},
          "scalars": {k: v.item() for k, v in flat.items() if v.size == 1}}


def run_meta(config, task, words) -> dict:
  """The metadata of a run's state file (see the module docstring); ``task``: the method's."""
  from biomedjax.tools import provenance
  return {
      "method": config.method.to_dict(),
      "loss": config.loss.to_dict() if "loss" in config else None,
      "classnames": list(task.classnames),
      "task_kind": task.kind,
      "template": task.template,
      "llm_prompts": {k: list(v) for k, v in task.llm_prompts.items()} if task.llm_prompts
                     else None,
      "image_size": config.data.image_size,
      "backbone": provenance.backbone(config.model),
      "vocabulary_words": list(words) if not config.model.init else None,
      "run": {"dataset": config.data.dataset, "shots": config.data.shots, "seed": config.seed},
  }


def load_backbone(meta: dict, backbone_dir=None):
  """The backbone as the run had it, as the same ``BiomedCLIP`` object ``biomedjax.load``
  returns (``.module``, ``.params``, ``.tokenizer``, ``encode_image``, ...); a converted dir is
  checked against its hash."""
  from biomedjax.tools import provenance
  from biomedjax.models import biomedclip as bc
  b = meta["backbone"]
  if b["kind"] == "random":
    from biomedjax.models import config as model_config
    from biomedjax.models.clip import CLIP
    from biomedjax.models.tokenizer import Tokenizer
    from biomedjax.models.vocab import write_vocab
    cfg = model_config.PRESETS[b["preset"]]()
    with tempfile.TemporaryDirectory(prefix="biomedjax-vocab-") as out:  # read in full, then gone
      vocab = write_vocab(pathlib.Path(out), meta["vocabulary_words"], size=cfg.text.vocab_size,
                          context_length=cfg.text.context_length)
      tokenizer = Tokenizer(vocab, cfg.text.context_length)
    return bc.BiomedCLIP(cfg, bc.init_params(cfg), tokenizer)
  directory = pathlib.Path(backbone_dir or b["dir"])
  manifest = directory / provenance.MANIFEST_FILE
  if not manifest.is_file():
    raise TrainedStateError(f"backbone {directory}: no {provenance.MANIFEST_FILE} (pass the "
                            "converted BiomedCLIP directory the method was trained with)")
  digest = provenance.sha256(manifest)
  if b.get("manifest_sha256") and digest != b["manifest_sha256"]:
    raise TrainedStateError(f"backbone {directory}: manifest sha256 {digest[:12]} differs from "
                            f"the one the method was trained with ({b['manifest_sha256'][:12]})")
  return bc.load(directory)


def task_of(meta: dict):
  """The ``Task`` the method was trained for (class names in label order, template, prompts,
  kind)."""
  from biomedjax.methods.base import Task
  prompts = meta.get("llm_prompts")
  return Task(tuple(meta["classnames"]), meta["template"],
              {k: tuple(v) for k, v in prompts.items()} if prompts else None,
              meta.get("task_kind", "multiclass"))


def objective_of(meta: dict, task):
  """The run's training objective (``config.loss``); evaluation does not need it."""
  from biomedjax import objectives
  import ml_collections as mlc
  return objectives.make(mlc.ConfigDict(meta["loss"]), task) if meta.get("loss") else None


def method_config(meta: dict):
  """The method's config block (``config.method`` of the run) as a ConfigDict."""
  import ml_collections as mlc
  return mlc.ConfigDict(meta["method"])


class TrainedClassifier:
  """Backbone + method + trained state; ``predict_files`` / ``predict_pixels`` give
  probabilities in the run's class order (softmax; sigmoid per class for multilabel tasks)."""

  def __init__(self, backbone, params, method, trainable, meta):
    import jax
    from biomedjax.train import loop, step as step_lib
    self.backbone, self.method, self.meta = backbone, method, meta
    self.classnames = tuple(meta["classnames"])
    self.kind = meta.get("task_kind", "multiclass")
    self.image_size = meta["image_size"]
    self.trainable = jax.tree.map(jax.numpy.asarray, trainable)
    self.params = params
    # A method that fine-tunes part of the tower holds that part in its trainable pytree.
    self.frozen = loop.split_frozen(method, {"backbone": params, **method.prepare(params)})
    # what the method reads from a batch of images, as the train step gives it
    self._inputs = jax.jit(lambda params, px: method.batch_inputs(
        step_lib.method_batch(method, backbone, params, {"image": px})))
    self._logits = step_lib.make_logits_fn(method, backbone)

  @classmethod
  def load(cls, path, backbone_dir=None) -> "TrainedClassifier":
    """From a state file (a run's ``trained_state.safetensors`` or an exported copy).
    ``backbone_dir``: where the converted backbone is now, if it moved since training."""
    from biomedjax.methods import METHODS
    from biomedjax.methods.base import Backbone
    trainable, meta = _load(path)  # the file read once: trainable and tower state
    model = load_backbone(meta, backbone_dir)
    # a tower that trained in the reference's train mode: its drifted statistics
    params = {**model.params, **trainable.pop(BACKBONE_STATE, {})}
    backbone = Backbone(model.module, model.tokenizer)
    task = task_of(meta)
    method = METHODS[meta["method"]["name"]].build(backbone, task, method_config(meta),
                                             objective_of(meta, task))
    return cls(backbone, params, method, trainable, meta)

  def logits_of_pixels(self, pixels):
    """Eval-preprocessed uint8 images (B, S, S, 3), as the run's eval pipeline yields them
    (``preprocess_file``), -> logits (B, C)."""
    import jax.numpy as jnp
    inputs = self._inputs(self.params, jnp.asarray(pixels))
    return np.asarray(self._logits(self.trainable, self.frozen, inputs), np.float64)

  def predict_pixels(self, pixels) -> np.ndarray:
    logits = self.logits_of_pixels(pixels)
    return 1 / (1 + np.exp(-logits)) if self.kind == "multilabel" else _softmax(logits)

  def preprocess_file(self, path) -> np.ndarray:
    """One image file -> the eval pipeline's array for it (same decode, resize and crop)."""
    from biomedjax.data import transforms
    record = {"image": pathlib.Path(path).read_bytes(), "label": 0, "path": str(path)}
    return transforms.EvalTransform(self.image_size).map(record)["image"]

  def predict_files(self, paths, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """(N, C) class probabilities of image files, in the run's class order."""
    from tqdm import tqdm
    out = []
    paths = list(paths)
    for i in tqdm(range(0, len(paths), batch_size), disable=not progress, desc="predict"):
      batch = np.stack([self.preprocess_file(p) for p in paths[i:i + batch_size]])
      out.append(self.predict_pixels(batch))
    return np.concatenate(out) if out else np.zeros((0, len(self.classnames)))


def _softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)
