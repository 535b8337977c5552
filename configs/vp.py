"""VP: a learned 30-px watermark frame added to the standardised 224 image, CLIP B/16.

  python launch.py --config configs/vp.py:dataset=btmri,shots=16,seed=1,model=ckpt/clip_b16 \
      --workdir runs/vp/btmri/16shot/seed1

Reference (tmlr-group/AttrVR ``experiments/fs_vp.py``): S = 224 (no downsizing), label head "This
is a photo of {}.", 200 epochs, batch 64 (16 at 1-shot), SGD lr 40 with a per-step cosine; shared
protocol in ``configs/_vr.py``. (The released VP/AR scripts default to 32 shots; the BioMedVR
table is 16-shot, as here.)
"""

from biomedjax.methods import vp
from configs import _vr

EPOCHS = 200


def get_config(arg=None):
  return _vr.get_config(arg, vp.Options, "vp", EPOCHS)


def sweep(add, arg=None):
  _vr.sweep(add, arg)
