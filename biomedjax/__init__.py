"""biomedjax: few-shot adaptation of biomedical vision-language models in JAX/Flax.

``biomedjax.load(DIR)`` returns a ``BiomedCLIP`` from a directory written by
``python -m convert.biomedclip``.
"""

__version__ = "0.1.0"


def load(path):
  """Loads a converted model directory; see ``biomedjax.models.biomedclip.load``."""
  from biomedjax.models.biomedclip import load as _load  # keeps `import biomedjax` light
  return _load(path)
