"""Zero-shot BiomedCLIP: one hand-crafted template, or the mean of an LLM prompt ensemble.

  python launch.py --config configs/zeroshot.py:dataset=btmri,model=ckpt/biomedclip --workdir runs/zs/btmri
  ... --config.method.ensemble=True --config.data.llm_prompts=prompt_ensembles.json
"""

import ml_collections as mlc

from configs import base, common


def get_config(arg=None):
  a = base.parse(arg)
  c = base.get_config(a)
  c.method = mlc.ConfigDict(dict(name="zeroshot", ensemble=False))
  return c


def sweep(add, arg=None):
  common.fewshot_grid(add, shots=(0,), seeds=(1,))
