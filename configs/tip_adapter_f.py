"""Tip-Adapter-F in BiomedCoOp's few-shot harness (the shipped ``finetune: True`` branch of
trainers/TipAdapter/tip_adapter_biomedclip.py).

  python launch.py --config configs/tip_adapter_f.py:dataset=btmri,shots=16,seed=1,model=ckpt/biomedclip \
      --workdir runs/tip_adapter_f/btmri/16shot/seed1

Ten fine-tunes of the cache keys (alpha0 = 0..9, beta 1; each its own AdamW lr 1e-3, eps 1e-4,
wd 0.01, per-iteration cosine, 20 full-batch epochs), the best on val (strict >), then the
200 x 200 (beta, alpha) search with the fine-tuned keys. As the reference's CODE runs them (its
``nn.Parameter(cache_keys.t())`` shares the keys' storage), the ten run in sequence on ONE
matrix and the final keys are the matrix all ten left (``method.shared_keys=True``, default);
``--config.method.shared_keys=False`` gives ten independent fine-tunes from the original keys,
keeping the winner's own, as the method's description implies. The reference's "main" training
is a no-op and is skipped (``--config.method.second_stage=True`` runs the intended one).
``fit_views`` augmented passes (1 for the cache + 10 x 20 for the fine-tunes, as the reference)
are encoded once.
"""

from biomedjax.methods import tip_adapter_f
from configs import _harness


def get_config(arg=None):
  return _harness.get_config(arg, tip_adapter_f.Options, "tip_adapter_f")


def sweep(add, arg=None):
  _harness.sweep(add, arg)
