"""What a Grad-CAM explains: the tower parameters and target weight vector for one label.

Zero-shot (no run directory, or a zero-shot run): the pretrained tower and the raw text feature of
the bare label (the IU-Xray study's one prompt per finding, no template). A linear-probe run
(``head_probe``/``linear_head``): the pretrained tower and the head's column for the label. A
fine-tuning run: the run's tuned tower (its evaluated, best-epoch weights) and head column.
The label order of a run is the one its ``multilabel_setting.npz`` records.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from biomedjax.studies import gradcam, multilabel_study


def zero_shot(model, label: str) -> tuple[object, np.ndarray, str]:
  ids, mask = model.tokenize([label])
  text = np.asarray(model.encode_text(ids, mask))
  return model.params, gradcam.zero_shot_target(text, 0), f"zero-shot, label {label!r}"


def resolve(model, workdir, label: str) -> tuple[object, np.ndarray, str]:
  """-> (CLIP params to run, target weights (D,), description)."""
  if workdir is None:
    return zero_shot(model, label)
  workdir = pathlib.Path(workdir)
  config_file = workdir / "config.json"
  if not config_file.is_file():
    raise ValueError(f"{workdir}: no config.json; --workdir must be a run directory")
  method = json.loads(config_file.read_text())["method"]["name"]
  if method == "zeroshot":
    return zero_shot(model, label)
  setting = multilabel_study.load_setting(workdir)
  classnames = list(setting["classnames"])
  if label not in classnames:
    raise ValueError(f"label {label!r} is not one of the run's labels {classnames}")
  trainable = multilabel_study.load_trainable(workdir)
  if trainable is None or "head" not in trainable:
    raise ValueError(f"{workdir}: no trained head saved ({multilabel_study.TRAINABLE_DIR}/); "
                     "run it again with this version")
  params = model.params
  if "visual" in trainable:
    params = {**model.params, "visual": trainable["visual"]}
  weights = gradcam.head_target(trainable["head"]["kernel"], classnames.index(label))
  return params, weights, f"{method} run {workdir.name}, head logit of {label!r}"
