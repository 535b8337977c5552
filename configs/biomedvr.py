"""BioMedVR: two padding programs (mixture of prompt experts) + confusion suppression, CLIP B/16.

  python launch.py --config configs/biomedvr.py:dataset=btmri,shots=16,seed=1,model=ckpt/clip_b16 \
      --config.method.attributes_dir=attributes --workdir runs/biomedvr/btmri/16shot/seed1

Reference (JXLiu-AI/BioMedVR ``experiments/biomedvr.py``): δ+ scored against des + dist attributes
(λ = ½), δ− against confuse attributes, m = 20 sentences per class (drawn with replacement from
the 5 released), top-k = 3, global softmax gate initialised (1, 1), loss CE + 0.3 * hinge(margin
0.5), 400 epochs, batch 64 (16 at 1-shot), SGD lr 40 with a per-step cosine; shared protocol in
``configs/_vr.py``. ``attributes_dir`` holds ``<dataset>_{des,dist,confuse}.json``.
"""

from biomedjax.methods import biomedvr
from configs import _vr

EPOCHS = 400


def get_config(arg=None):
  return _vr.get_config(arg, biomedvr.Options, "biomedvr", EPOCHS)


def sweep(add, arg=None):
  _vr.sweep(add, arg)
