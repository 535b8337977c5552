"""biomedjax: few-shot adaptation of biomedical vision-language models in JAX/Flax.

``biomedjax.load(DIR)`` returns a ``BiomedCLIP`` (the model API, for either backbone family:
BiomedCLIP or OpenAI CLIP, as named by the directory's config.json) from a directory written by
``python -m convert`` (= ``python -m convert.biomedclip``).

Importing biomedjax adds one XLA CPU flag to ``XLA_FLAGS`` (see ``_fast_cpu_matmuls``); import it
before JAX runs anything for the flag to apply.
"""

import os

__version__ = "0.1.0"

CPU_MATMUL_FLAG = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"


def _fast_cpu_matmuls() -> None:
  """Routes XLA:CPU matrix multiplications to YNNPACK instead of its default (Eigen) kernels.

  On the AVX2 CPUs this project is measured on, the default fp32 GEMM is ~30% slower than the
  MKL/OpenBLAS kernels torch uses, which makes the frozen image tower slower than open_clip's;
  with this flag it is faster (benchmarks/README.md). The flag only affects the CPU backend and is
  read when JAX initialises it, so it must be in the environment first. Accuracy is fp32 either
  way (the parity tests run with it). ``BIOMEDJAX_DEFAULT_XLA_FLAGS=0`` opts out.
  """
  if os.environ.get("BIOMEDJAX_DEFAULT_XLA_FLAGS", "1") == "0":
    return
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_MATMUL_FLAG}".strip()


_fast_cpu_matmuls()
# transformers (used for its tokenizers only) announces "PyTorch was not found" on every import in
# an installation without torch, as an "advisory" warning (transformers/__init__.py): not the
# user's concern. Only advisories are silenced; an explicit setting wins.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def load(path=None, *, preset=None, words=(), seed=0):
  """A ``BiomedCLIP``: from a converted model directory (``biomedjax.models.biomedclip.load``),
  or with ``preset=`` ("tiny", "biomedclip", "clip_vit_b16") RANDOM weights of that
  architecture and a generated vocabulary in which ``words`` are whole tokens: the same object
  and API without converting anything, for trying the API (every number it gives is
  meaningless)."""
  from biomedjax.models import biomedclip as bc  # keeps `import biomedjax` light
  if (path is None) == (preset is None):
    raise ValueError("biomedjax.load: pass a converted model directory or preset=, not both")
  if path is not None:
    return bc.load(path)
  import tempfile
  from biomedjax.models import config as model_config
  from biomedjax.models import families
  if preset not in model_config.PRESETS:
    raise ValueError(f"biomedjax.load: preset={preset!r}; one of {sorted(model_config.PRESETS)}")
  cfg = model_config.PRESETS[preset]()
  with tempfile.TemporaryDirectory(prefix="biomedjax-vocab-") as vocab:  # read in full, then gone
    tokenizer = families.random_tokenizer(cfg, vocab, words)
  return bc.BiomedCLIP(cfg, bc.init_params(cfg, seed), tokenizer)
