"""Zero-shot BiomedCLIP: one hand-crafted template, or the mean of an LLM prompt ensemble.

  python launch.py --config configs/zeroshot.py:dataset=btmri,model=ckpt/biomedclip --workdir runs/zs/btmri
  ... --config.method.ensemble=True --config.data.llm_prompts=prompt_ensembles.json
"""

from biomedjax.methods import zeroshot
from configs import base, common


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  c.method = base.method_config(zeroshot.Options, "zeroshot")
  return c


def sweep(add, arg=None):
  """Datasets only: zero-shot uses no training image, so K and the seed change nothing."""
  grid = common.sweep_grid(arg)[1]
  common.fewshot_grid(add, shots=(0,), seeds=(1,), **{k: v for k, v in grid.items()
                                                       if k == "datasets"})
