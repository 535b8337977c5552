"""PyTorch transcription of the visual-reprogramming references (VP, AR, AttrVR, BioMedVR).

Written from the published protocol (BioMedVR = a fork of AttrVR; repositories
JXLiu-AI/BioMedVR and tmlr-group/AttrVR), independently of biomedjax's code:

* ``methods/vp.py`` ``PaddingVR``: P (3, canvas, canvas) and a buffer M that is 1 on the frame
  and 0 on the centre S x S, built as ``F.pad(zeros(3, S, S), (l, r, l, r), value=1)`` with
  l = int((canvas - S + 1) / 2), r = int((canvas - S) / 2). Forward on x in [0, 1] (B, 3, S, S):
  ``normalize(F.pad(x, (l, r, l, r)) + sigmoid(P) * M)`` with CLIP's mean/std.
* ``methods/vp.py`` watermarking (VP as the VR repos run it): M = 1 on a ``pad``-pixel frame of
  the canvas; forward on the already-normalised full image: ``x + P * M`` (no sigmoid).
* ``tools.py`` ``clip_attr_classifier``: each sentence encoded alone, L2-normalised, per class
  -> T (C, m, D). ``getLogits``: ``s = exp(logit_scale) * f_hat . t`` for every class and
  sentence, then the mean of the top-k along the sentences (torch ``topk``; gradient through
  the selected k).
* Label head (``basic_template``): "This is a photo of {}." per class, normalised, mean over
  templates, re-normalised; logits ``exp(logit_scale) * f_hat @ W``.
* BioMedVR ``experiments/biomedvr.py``: two PaddingVR experts, ``gating_logits = ones(2)``,
  ``gates = softmax(gating_logits)``; every expert's image through ``encode_image`` SEPARATELY
  (two passes); ``pos = 0.5 (L_des(f+) + L_dist(f+))``, ``neg = L_confuse(f-)``,
  ``fused = gates[0] pos + gates[1] neg``; loss ``CE(fused, y) + beta * clamp(mean(relu(
  max_c neg - fused[y] + margin)), max=1e3)``.

Everything runs in fp32 (the reference's fp16 autocast is not reproduced by anyone).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize(x, mean=OPENAI_MEAN, std=OPENAI_STD):
  m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
  s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
  return (x - m) / s


class PaddingVR(nn.Module):
  def __init__(self, canvas: int, size: int, program=None):
    super().__init__()
    self.l_pad = int((canvas - size + 1) / 2)
    self.r_pad = int((canvas - size) / 2)
    pads = (self.l_pad, self.r_pad, self.l_pad, self.r_pad)
    self.register_buffer("mask", F.pad(torch.zeros(3, size, size), pads, value=1))
    init = torch.zeros(3, canvas, canvas) if program is None else torch.tensor(np.asarray(program))
    self.program = nn.Parameter(init.clone().float())

  def forward(self, x):
    pads = (self.l_pad, self.r_pad, self.l_pad, self.r_pad)
    x = F.pad(x, pads, value=0) + torch.sigmoid(self.program) * self.mask
    return normalize(x)


class WatermarkingVR(nn.Module):
  def __init__(self, canvas: int, pad: int, program=None):
    super().__init__()
    inner = canvas - 2 * pad
    self.register_buffer("mask", F.pad(torch.zeros(3, inner, inner), (pad,) * 4, value=1))
    init = torch.zeros(3, canvas, canvas) if program is None else torch.tensor(np.asarray(program))
    self.program = nn.Parameter(init.clone().float())

  def forward(self, x_normalised):
    return x_normalised + self.program * self.mask


@torch.no_grad()
def attribute_features(encode_text, sentences):
  """clip_attr_classifier: per class list of sentences -> (C, m, D), every row normalised."""
  out = []
  for per_class in sentences:
    f = encode_text(per_class).float()
    out.append(f / f.norm(dim=-1, keepdim=True))
  return torch.stack(out)


@torch.no_grad()
def label_weights(encode_text, sentences):
  """One or more templates per class -> W (D, C): normalised mean of normalised features."""
  cols = []
  for per_class in sentences:
    f = encode_text(per_class).float()
    f = f / f.norm(dim=-1, keepdim=True)
    mean = f.mean(0)
    cols.append(mean / mean.norm())
  return torch.stack(cols, dim=1)


def get_logits(image_feats_norm, text, scale, k: int):
  """getLogits: (B, D), (C, m, D) -> (B, C) mean of the k best scaled cosines per class."""
  s = scale * torch.einsum("bd,cmd->bcm", image_feats_norm, text)
  return s.topk(k, dim=-1).values.mean(-1)


class TorchVR(nn.Module):
  """One of the four reference networks on a frozen open_clip model.

  ``kind``: "vp" | "ar" | "attrvr" | "biomedvr"; ``programs``: the initial program arrays
  (channel-first), ``gate``: BioMedVR's initial gating logits; ``sentences``: head -> per class
  sentences (the ones the method drew); ``size``: S (the image side), ``pad``: VP's frame.
  """

  def __init__(self, model, encode_text, kind, programs, sentences, canvas, size, pad=30,
               k=3, gate=None, beta=0.3, margin=0.5):
    super().__init__()
    self.model, self.kind, self.k, self.beta, self.margin = model, kind, k, beta, margin
    if kind == "vp":
      self.experts = nn.ModuleList([WatermarkingVR(canvas, pad, programs[0])])
    else:
      self.experts = nn.ModuleList([PaddingVR(canvas, size, p) for p in programs])
    if kind == "biomedvr":
      g = torch.ones(2) if gate is None else torch.tensor(np.asarray(gate))
      self.gating_logits = nn.Parameter(g.clone().float())
    if kind in ("vp", "ar"):
      self.register_buffer("label_w", label_weights(encode_text, sentences["label"]))
    else:
      for head in ("des", "dist") + (("confuse",) if kind == "biomedvr" else ()):
        self.register_buffer(f"t_{head}", attribute_features(encode_text, sentences[head]))

  def program_images(self, x):
    """(P, B, 3, canvas, canvas): what each expert feeds the image tower."""
    if self.kind == "vp":
      return torch.stack([self.experts[0](normalize(x))])
    return torch.stack([e(x) for e in self.experts])

  def encode(self, images):
    f = self.model.encode_image(images)
    return f / f.norm(dim=-1, keepdim=True)

  def forward(self, x):
    """-> dict of logits: "logits" (the prediction), and for BioMedVR "pos", "neg"."""
    scale = self.model.logit_scale.exp()
    outs = self.program_images(x)
    if self.kind in ("vp", "ar"):
      return {"logits": scale * self.encode(outs[0]) @ self.label_w}
    if self.kind == "attrvr":
      f = self.encode(outs[0])
      return {"logits": 0.5 * get_logits(f, self.t_des, scale, self.k)
              + 0.5 * get_logits(f, self.t_dist, scale, self.k)}
    f_pos, f_neg = self.encode(outs[0]), self.encode(outs[1])  # two passes, as the reference
    pos = 0.5 * (get_logits(f_pos, self.t_des, scale, self.k)
                 + get_logits(f_pos, self.t_dist, scale, self.k))
    neg = get_logits(f_neg, self.t_confuse, scale, self.k)
    gates = F.softmax(self.gating_logits, dim=0)
    fused = (gates.view(-1, 1, 1) * torch.stack([pos, neg])).sum(0)
    return {"logits": fused, "pos": pos, "neg": neg}

  def loss(self, x, y):
    out = self.forward(x)
    loss = F.cross_entropy(out["logits"], y)
    if self.kind == "biomedvr":
      correct = out["logits"].gather(1, y.unsqueeze(1)).squeeze(1)
      penalty = torch.relu(out["neg"].max(1).values - correct + self.margin).mean()
      loss = loss + self.beta * torch.clamp(penalty, max=1e3)
    return loss, out
