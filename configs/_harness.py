"""The few-shot harness the adapter baselines share (BiomedCoOp's ``main.py``, not Dassl).

* ``data.template`` "a photo of a {}." (hard-coded in the reference for every dataset);
* ``data.split_seed`` 1: every run draws the seed-1 few-shot images; the run seed (1, 2, 3) only
  drives shuffling, augmentation and initialisation. ``data.split_seed=0`` gives each run the
  split of its own seed (as the CoOp family);
* ``data.augment`` "harness": training views are RandomResizedCrop(224, scale (0.5, 1)) +
  horizontal flip, encoded ``fit_views`` times before ``fit``;
* test batch 100; the three seeds of a (dataset, K) are one group in the report.
"""

from __future__ import annotations

import ml_collections as mlc

from configs import base

HARNESS_DATA = dict(template="a photo of a {}.", split_seed=1, augment="harness",
                    test_batch_size=100)


def get_config(arg, options_cls, name: str, **overrides) -> mlc.ConfigDict:
  a = base.parse(arg)
  c = base.get_config(a)
  for k, v in HARNESS_DATA.items():
    c.data[k] = v
  c.method = base.method_config(options_cls, name, **overrides)
  return c


def sweep(add, arg=None):
  """Datasets x K (1, 2, 4, 8, 16) x seeds (1, 2, 3): the paper's few-shot table."""
  base.sweep(add, arg)
