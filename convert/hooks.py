"""Array transforms from a PyTorch tensor layout to the Flax one; one job each.

PyTorch Linear weights are (out, in) and Flax Dense kernels (in, out); PyTorch convolutions are
(O, I, kH, kW) and Flax's (kH, kW, I, O). HuggingFace BERT keeps q, k, v as three Linears where the
Flax attention has one fused ``qkv`` Dense (as timm's ViT), so those are concatenated.
"""

import numpy as np


def identity(x):
  return x


def linear_t(w):
  return np.ascontiguousarray(w.T)


def conv_oihw_to_hwio(w):
  return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def concat_linear_t(*ws):
  """Three (out, in) Linear weights -> one (in, 3*out) kernel, in the order given (q, k, v)."""
  return np.concatenate([w.T for w in ws], axis=1)


def concat(*bs):
  return np.concatenate(bs, axis=0)
