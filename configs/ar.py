"""AR: padding program (192 image in a learned 16-px frame) + "This is a photo of {}.", CLIP B/16.

  python launch.py --config configs/ar.py:dataset=btmri,shots=16,seed=1,model=ckpt/clip_b16 \
      --workdir runs/ar/btmri/16shot/seed1

Reference (tmlr-group/AttrVR ``experiments/fs_ar.py``): 200 epochs, batch 64 (16 at 1-shot), SGD lr
40 with a per-step cosine; shared protocol in ``configs/_vr.py``. (The released VP/AR scripts
default to 32 shots; the BioMedVR table is 16-shot, as here.)
"""

from biomedjax.methods import ar
from configs import _vr

EPOCHS = 200


def get_config(arg=None):
  return _vr.get_config(arg, ar.Options, "ar", EPOCHS)


def sweep(add, arg=None):
  _vr.sweep(add, arg)
