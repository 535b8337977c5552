"""One ResNet tower for every family that has one: OpenAI CLIP's ``ModifiedResNet`` and
torchvision's ``resnet50``, as two variants of the same code (one Bottleneck, variant switches).

``variant="clip"`` is open_clip ``ModifiedResNet`` (``open_clip/modified_resnet.py``; the copy
PMC-CLIP loads, BiomedCoOp ``clip/pmcclip.py:43-217``): a 3-conv stem + 2x2 average pool,
"anti-aliased" strides (every conv has stride 1; an ``AvgPool2d(stride)`` follows conv2 and
precedes the 1x1 downsample conv, ``clip/pmcclip.py:58,69-73``) and attention pooling (the mean
token queries the spatial tokens, ``clip/pmcclip.py:90-124``).
``variant="torchvision"`` is ``torchvision.models.resnet50`` (ResNet v1.5): a 7x7 stride-2 stem +
3x3 max pool, the stride on the 3x3 conv, a strided 1x1 downsample conv, global average pool and
``fc`` (MedCLIP's ResNet variant replaces ``fc`` by a Linear to 512).

BatchNorm is torch's ``BatchNorm2d`` (``BatchNorm`` below): the running statistics live in the
``batch_stats`` collection, and the mode is chosen per call:

* eval: running statistics; ``module.apply({"params": p, "batch_stats": s}, x)``;
* train (the reference's mode when Dassl calls ``.train()`` on a wrapper holding the frozen
  tower): normalise with the batch's statistics and update the running ones as torch does
  (momentum 0.1, the *unbiased* batch variance); ``module.apply(variables, x,
  mutable=["batch_stats"])`` returns ``(features, {"batch_stats": updated})``.

``train=None`` (default) means "train iff ``batch_stats`` is mutable in this apply", so the same
call signature serves both and callers that do not pass ``mutable`` get eval mode.

Public constructor (all arguments keywords)::

  ResNet(layers=(3, 4, 6, 3), width=64, output_dim=1024, variant="clip", heads=32,
         image_size=224, fc_bias=True, remat=False)
  # torchvision resnet50 with fc -> 512 (MedCLIP's ResNet variant):
  ResNet(output_dim=512, variant="torchvision", fc_bias=False)

Input NHWC float pixels (B, H, W, 3), normalised; output (B, output_dim). Parameter names follow
the torch state dict (``conv1``, ``bn1``, ``layer1_0/conv1``, ``layer1_0/downsample_0``, ``fc``,
``attnpool/q_proj``), so ``convert/mapping.py`` maps them one-to-one.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from biomedjax.models.config import VisionConfig

VARIANTS = ("clip", "torchvision")


class BatchNorm(nn.Module):
  """``torch.nn.BatchNorm2d`` over NHWC: per-channel ``scale`` / ``bias`` (params) and
  ``mean`` / ``var`` (``batch_stats``).

  Training mode normalises with the batch mean and *biased* variance and updates
  ``running = (1 - momentum) * running + momentum * batch`` with the *unbiased* variance, as
  torch does (flax's own ``nn.BatchNorm`` uses the biased one, so its statistics would drift
  differently). Initialisation never updates the statistics.
  """
  momentum: float = 0.1
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    if train:
      xf = x.astype(jnp.float32)
      mean = xf.mean(axis=(0, 1, 2))
      var = jnp.mean(jnp.square(xf - mean), axis=(0, 1, 2))
      if not self.is_initializing():
        n = x.size // c
        m = self.momentum
        ra_mean.value = (1 - m) * ra_mean.value + m * jax.lax.stop_gradient(mean)
        ra_var.value = (1 - m) * ra_var.value + m * jax.lax.stop_gradient(var) * (n / max(n - 1, 1))
    else:
      mean, var = ra_mean.value, ra_var.value
    inv = jax.lax.rsqrt(var + self.eps).astype(x.dtype) * scale.astype(x.dtype)
    return (x - mean.astype(x.dtype)) * inv + bias.astype(x.dtype)


def _conv(features, kernel, name, stride=1, pad=None):
  """torch ``Conv2d(bias=False)`` with torch's symmetric padding (``kernel // 2`` by default)."""
  pad = kernel // 2 if pad is None else pad
  return nn.Conv(features, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
                 use_bias=False, name=name)


def _avg_pool(x, s):
  return x if s == 1 else nn.avg_pool(x, (s, s), strides=(s, s))


class Bottleneck(nn.Module):
  """The ResNet-50 bottleneck (1x1 -> 3x3 -> 1x1 x4, residual), in both variants.

  clip: ``clip/pmcclip.py:43-88`` (stride as an average pool after conv2; downsample = avgpool ->
  1x1 conv -> BN, keys ``downsample.0`` / ``downsample.1`` after the parameter-free ``-1``).
  torchvision: stride on conv2; downsample = strided 1x1 conv -> BN (``downsample.0/1``).
  """
  planes: int
  stride: int = 1
  variant: str = "clip"
  train: bool = False

  @nn.compact
  def __call__(self, x):
    out_ch = self.planes * 4
    conv2_stride = self.stride if self.variant == "torchvision" else 1
    out = nn.relu(BatchNorm(name="bn1")(_conv(self.planes, 1, "conv1")(x), self.train))
    out = nn.relu(BatchNorm(name="bn2")(
        _conv(self.planes, 3, "conv2", stride=conv2_stride)(out), self.train))
    if self.variant == "clip":
      out = _avg_pool(out, self.stride)
    out = BatchNorm(name="bn3")(_conv(out_ch, 1, "conv3")(out), self.train)
    if self.stride > 1 or x.shape[-1] != out_ch:
      if self.variant == "clip":
        identity = _conv(out_ch, 1, "downsample_0")(_avg_pool(x, self.stride))
      else:
        identity = _conv(out_ch, 1, "downsample_0", stride=self.stride)(x)
      identity = BatchNorm(name="downsample_1")(identity, self.train)
    else:
      identity = x
    return nn.relu(out + identity)


class AttentionPool2d(nn.Module):
  """CLIP's attention pooling (``clip/pmcclip.py:90-124``): tokens = [mean; spatial] +
  positional embedding; multi-head attention with q/k/v/c projections; the output row of the
  mean token. Only that query is computed (the reference computes all rows and keeps row 0)."""
  spatial: int
  heads: int
  output_dim: int

  @nn.compact
  def __call__(self, x):
    b, h, w, c = x.shape
    x = x.reshape(b, h * w, c)
    x = jnp.concatenate([x.mean(axis=1, keepdims=True), x], axis=1)
    pos = self.param("positional_embedding", nn.initializers.normal(c ** -0.5),
                     (self.spatial ** 2 + 1, c))
    x = x + pos.astype(x.dtype)
    hd = c // self.heads
    q = nn.Dense(c, name="q_proj")(x[:, :1]).reshape(b, 1, self.heads, hd)
    k = nn.Dense(c, name="k_proj")(x).reshape(b, -1, self.heads, hd)
    v = nn.Dense(c, name="v_proj")(x).reshape(b, -1, self.heads, hd)
    out = jax.nn.dot_product_attention(q, k, v)  # scale hd ** -0.5, as torch's MHA
    return nn.Dense(self.output_dim, name="c_proj")(out.reshape(b, c))


class ResNet(nn.Module):
  """NHWC pixels -> (B, output_dim) features; see the module docstring for the variants.

  ``heads`` and ``image_size`` are the attention pool's (clip variant only); ``fc_bias`` is the
  torchvision head's. ``remat``: each Bottleneck under ``jax.checkpoint`` (pixel-space methods
  at large batch sizes), same parameters and outputs.
  """
  layers: Sequence[int] = (3, 4, 6, 3)
  width: int = 64
  output_dim: int = 1024
  variant: str = "clip"
  heads: int = 32
  image_size: int = 224
  fc_bias: bool = True
  remat: bool = False

  @nn.compact
  def __call__(self, x, train: Optional[bool] = None):
    if self.variant not in VARIANTS:
      raise ValueError(f"ResNet variant {self.variant!r}: use one of {VARIANTS}")
    if train is None:
      train = self.is_mutable_collection("batch_stats") and not self.is_initializing()
    w = self.width
    if self.variant == "clip":  # clip/pmcclip.py:139-149, 197-202
      for i, (ch, stride) in enumerate(((w // 2, 2), (w // 2, 1), (w, 1)), start=1):
        x = _conv(ch, 3, f"conv{i}", stride=stride)(x)
        x = nn.relu(BatchNorm(name=f"bn{i}")(x, train))
      x = _avg_pool(x, 2)
    else:  # torchvision resnet.py: conv1 7x7/2, bn1, relu, maxpool 3x3/2 pad 1
      x = nn.relu(BatchNorm(name="bn1")(_conv(w, 7, "conv1", stride=2)(x), train))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    block = nn.remat(Bottleneck) if self.remat else Bottleneck
    for li, n in enumerate(self.layers):
      planes = w * 2 ** li
      for bi in range(n):
        stride = 2 if (li > 0 and bi == 0) else 1
        x = block(planes, stride, self.variant, train, name=f"layer{li + 1}_{bi}")(x)
    if self.variant == "clip":
      return AttentionPool2d(self.image_size // 32, self.heads, self.output_dim,
                             name="attnpool")(x)
    return nn.Dense(self.output_dim, use_bias=self.fc_bias, name="fc")(x.mean(axis=(1, 2)))


def modified_resnet(cfg: VisionConfig, embed_dim: int, remat: bool = False) -> ResNet:
  """The CLIP families' image tower: ``ResNet(variant="clip")`` from a ``VisionConfig`` with
  ``tower="modified_resnet"`` (``layers``, ``width``, ``heads``, ``image_size``); the signature
  of the other towers' constructors, so ``families.py`` lists it as one."""
  return ResNet(layers=tuple(cfg.layers), width=cfg.width, output_dim=embed_dim, variant="clip",
                heads=cfg.heads, image_size=cfg.image_size, remat=remat)


def calibrate_stats(module, backbone, key, batch: int = 8):
  """Random weights' running statistics := the batch statistics of random normal pixels.

  At init the statistics are 0 / 1, which normalise nothing: through a random ResNet the
  activations' mean grows block by block and the features of any two images end up ~identical
  (cosine 0.99999 at the tiny preset), so a random tower could not be trained through (pixel-space
  methods) or tell classes apart. One train-mode forward gives ``new = 0.9 * old + 0.1 * batch``
  per BatchNorm; solving for ``batch`` sets each layer to the statistics it sees when all layers
  before it are normalised by theirs. For random-weight presets only (``init_params``); converted
  checkpoints keep their own statistics. ``module`` is a ``CLIP`` whose backbone has them.
  """
  from biomedjax.models.clip import CLIP, variables  # clip imports the towers, not vice versa
  size = module.cfg.vision.image_size
  x = jax.random.normal(key, (batch, size, size, 3), jnp.float32)
  _, upd = module.apply(variables(backbone), x, method=CLIP.encode_image, mutable=["batch_stats"])
  m = BatchNorm.momentum
  stats = jax.tree.map(lambda old, new: (new - (1 - m) * old) / m, backbone["batch_stats"],
                       upd["batch_stats"])
  return {**backbone, "batch_stats": stats}
