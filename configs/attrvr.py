"""AttrVR: padding program scored against des/dist attribute sentences (top-3 of 20), CLIP B/16.

  python launch.py --config configs/attrvr.py:dataset=btmri,shots=16,seed=1,model=ckpt/clip_b16 \
      --config.method.attributes_dir=attributes --workdir runs/attrvr/btmri/16shot/seed1

Reference (tmlr-group/AttrVR ``experiments/fs_attrvr.py``): λ = 0.5, m = 20, k = 3, 200 epochs,
batch 64 (16 at 1-shot), SGD lr 40 with a per-step cosine; shared protocol in
``configs/_vr.py``. ``attributes_dir`` holds ``<dataset>_{des,dist}.json``.
"""

from biomedjax.methods import attrvr
from configs import _vr

EPOCHS = 200


def get_config(arg=None):
  return _vr.get_config(arg, attrvr.Options, "attrvr", EPOCHS)


def sweep(add, arg=None):
  _vr.sweep(add, arg)
