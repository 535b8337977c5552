"""What the adapter baselines share: the reference's ``main.py`` harness, seen from a method.

CLIP-Adapter, Tip-Adapter, Tip-Adapter-F and LP++ run in BiomedCoOp's ``main.py`` harness (a port
of FereshteShakeri/FewShot-CLIP-Strong-Baseline), not Dassl's ``train.py``:

* one hard-coded template, "a photo of a {}." ('_' in class names read as spaces), encoded,
  L2-normalised (the mean over the one template is the identity);
* training features come from the *augmented* train transform (RandomResizedCrop(224, scale
  (0.5, 1)) + horizontal flip), one fresh pass per epoch where the method trains. A method
  declares how many passes ("views") it wants as ``fit_views``; the engine encodes them once and
  hands them to ``fit`` as a (V, n, d) array, so the whole procedure runs on cached features.
  Fewer views than asked are cycled (exactly the reference when V equals ``fit_views``).

It also checks a saved cache/state against the run: an exported state records the class names
and a backbone fingerprint, and loading it into another run is an error naming what differs.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import jax
import numpy as np

TEMPLATE = "a photo of a {}."


def text_features(method, backbone_params):
  """(N, d) normalised text features of the harness template for the method's classes."""
  from biomedjax.methods import zeroshot
  prompts = [TEMPLATE.format(c.replace("_", " ")) for c in method.task.classnames]
  return zeroshot.encode_prompts(method.backbone, backbone_params, prompts)


def train_views(train) -> np.ndarray:
  """A ``FeatureSet``'s features as (V, n, d) views: (n, d) is one view."""
  feats = np.asarray(train.features, np.float32)
  if feats.ndim == 2:
    return feats[None]
  if feats.ndim != 3 or feats.shape[1] != len(train.labels):
    raise ValueError(f"training features must be (n, d) or (views, n, d) with n = "
                     f"{len(train.labels)} labels, got {feats.shape}")
  return feats


def check_val(val, method: str):
  if val is None or len(val.labels) == 0:
    raise ValueError(f"{method}: the val split is empty; this method selects on the few-shot "
                     "val features (min(K, 4) per class), so the split file needs a 'val' list")


def check_labels(labels, num_classes: int, split: str, method: str):
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.size == 0 or labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"{method}: {split} labels must be integers in [0, {num_classes}), got "
                     f"shape {labels.shape}" + (f", range [{labels.min()}, {labels.max()}]"
                                                if labels.size else ""))


def check_fit_inputs(train, val, num_classes: int, method: str) -> None:
  """What every harness ``fit`` needs: a non-empty val split and labels in range on both."""
  check_val(val, method)
  check_labels(train.labels, num_classes, "train", method)
  check_labels(val.labels, num_classes, "val", method)


def backbone_fingerprint(params) -> str:
  """A short hash of the backbone: its tree layout, shapes, and the first values of each leaf."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    a = np.asarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}{a.shape}{a.dtype}".encode())
    h.update(np.ascontiguousarray(a.reshape(-1)[:16]).tobytes())
  return h.hexdigest()[:16]


def save_state(path, state: dict, classnames, fingerprint: str, method: str) -> None:
  """Writes ``state`` (arrays) + what it was built for to ``path`` (.npz + .json), atomically."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp.npz")
  np.savez(tmp, **{k: np.asarray(v) for k, v in state.items()})
  meta = {"method": method, "classnames": list(classnames), "backbone": fingerprint}
  path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
  tmp.replace(path.with_suffix(".npz"))


def load_state(path, classnames, fingerprint: str, method: str) -> dict:
  """A state written by ``save_state``; another method, class list or backbone is an error."""
  path = pathlib.Path(path)
  meta_file, data_file = path.with_suffix(".json"), path.with_suffix(".npz")
  try:
    meta = json.loads(meta_file.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{meta_file}: cannot read the state's description ({e})") from e
  if meta.get("method") != method:
    raise ValueError(f"{data_file}: built by method {meta.get('method')!r}, not {method!r}")
  if list(meta.get("classnames", [])) != list(classnames):
    raise ValueError(f"{data_file}: built for classes {meta.get('classnames')}, this run has "
                     f"{list(classnames)}")
  if meta.get("backbone") != fingerprint:
    raise ValueError(f"{data_file}: built with another backbone (fingerprint "
                     f"{meta.get('backbone')}, this run's is {fingerprint})")
  with np.load(data_file) as f:
    return {k: f[k] for k in f.files}
