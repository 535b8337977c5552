"""The offline demo: CoOp and a linear probe on synthetic images with a tiny random backbone.

  python launch.py --config configs/demo.py --workdir /tmp/demo

Runs both methods (this file's sweep, one workdir each) and writes /tmp/demo/report/;
``configs/demo.py:method=coop`` runs one of them. The backbone has RANDOM
weights and the images are synthetic stripes: it shows the machinery (data, training, loss
falling, evaluation, report) working end to end, not medical performance. With converted weights
and a prepared dataset the same machinery runs for real, e.g.
``configs/coop.py:dataset=btmri,model=ckpt/biomedclip``.
"""

import ml_collections as mlc

from biomedjax.methods import coop, linear_probe
from configs import base, common


def get_config(arg=None):
  a = common.parse_arg(arg, method="coop", seed=1)
  c = base.get_config(base.parse(f"dataset=synthetic,shots=16,seed={a.seed}"))
  c.run_sweep = not arg  # no argument: run both methods (the sweep); an argument: that one run
  c.model.preset = "tiny"
  c.data.synthetic = mlc.ConfigDict(dict(classes=4, per_class=40, size=64))
  c.data.test_batch_size = 64
  if a.method == "coop":
    c.method = base.method_config(coop.Options, "coop", csc=True)
    c.optim.lr = 0.02
    c.optim.epochs = 30
  elif a.method == "linear_probe":
    c.method = base.method_config(linear_probe.Options, "linear_probe")
  else:
    raise ValueError(f"demo method {a.method!r}: coop or linear_probe")
  c.train.log_every_steps = 10
  return c


def sweep(add, arg=None):
  add(**common.arg(method="coop"))
  add(**common.arg(method="linear_probe"))
