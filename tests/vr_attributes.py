"""Synthetic attribute files for tests of the VR attribute heads (no released text is copied).

Sentences use the tiny vocabularies' words, so they fit both families' contexts.
"""

from __future__ import annotations

import json
import pathlib

FORMS = ("a photo of the {}", "an mri scan showing {}", "the brain scan with {}",
         "a normal mri of {}", "the photo showing an {}")


def write(directory: pathlib.Path, key: str, classnames, heads=("des", "dist", "confuse"),
          per_class: int = 5) -> pathlib.Path:
  """``<directory>/<key>_<head>.json`` for every head, ``per_class`` sentences per class."""
  directory.mkdir(parents=True, exist_ok=True)
  for i, head in enumerate(heads):
    data = {c.replace(" ", "_"): [FORMS[(j + i) % len(FORMS)].format(c.replace("_", " "))
                                  + "." * (j // len(FORMS)) for j in range(per_class)]
            for c in classnames}
    (directory / f"{key}_{head}.json").write_text(json.dumps(data))
  return directory
