"""What a Grad-CAM explains: the tower parameters and target weight vector for one label.

Zero-shot (no run directory): the pretrained tower and the raw text feature of the bare label
(the IU-Xray study's one prompt per finding, no template). A run directory adds the trained head
(and, for fine-tuning, the tuned tower) restored from its checkpoint.
"""

from __future__ import annotations

import numpy as np

from biomedjax import gradcam


def zero_shot(model, label: str) -> tuple[object, np.ndarray, str]:
  ids, mask = model.tokenize([label])
  text = np.asarray(model.encode_text(ids, mask))
  return model.params, gradcam.zero_shot_target(text, 0), f"zero-shot, label {label!r}"


def resolve(model, workdir, label: str) -> tuple[object, np.ndarray, str]:
  """-> (CLIP params to run, target weights (D,), description)."""
  if workdir is None:
    return zero_shot(model, label)
  raise ValueError(f"{workdir}: reading trained heads from run directories is not available yet")
