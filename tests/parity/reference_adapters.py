"""PyTorch transcriptions of the reference computations of the adapter baselines, on features.

Written from HealthX-Lab/BiomedCoOp ``trainers/utils.py`` (``build_cache_model``,
``search_hp_tip_biomedclip``, ``cls_acc``), ``trainers/TipAdapter/tip_adapter_biomedclip.py``,
``trainers/LP2/linear_probe_p2_biomedclip.py`` (= FereshteShakeri/FewShot-CLIP-Strong-Baseline
``methods/linear_probe_p2.py``), ``trainers/ClipAdapter/clip_adapter_biomedclip.py`` and Dassl's
``ConstantWarmupScheduler``, with the image encoder replaced by given feature arrays. Loops,
operation order, optimiser classes and tie rules are the reference's; only I/O and prints are gone.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.linalg import eigh
from torch.optim.lr_scheduler import _LRScheduler

SCALE = 85.2323
torch.set_num_threads(1)  # tiny ops: threads only add overhead (and the box is shared)


def t(x, dtype=torch.float32):
  return torch.from_numpy(np.array(x)).to(dtype)  # a copy: torch wants writable arrays


def cls_acc(output, target, topk=1):
  pred = output.topk(topk, 1, True, True)[1].t()
  correct = pred.eq(target.view(1, -1).expand_as(pred))
  # [0]: NumPy 2.x no longer converts a 1-element 1-D array with float().
  acc = float(correct[: topk].reshape(-1).float().sum(0, keepdim=True).cpu().numpy()[0])
  return 100 * acc / target.shape[0]


def build_cache_model(views, labels):
  """``views`` (augment_epoch, n, d) raw features in loader order -> keys (d, n), values (n, N)."""
  cache_keys = [t(v).unsqueeze(0) for v in views]
  cache_keys = torch.cat(cache_keys, dim=0).mean(dim=0)
  cache_keys /= cache_keys.norm(dim=-1, keepdim=True)
  cache_keys = cache_keys.permute(1, 0)
  cache_values = F.one_hot(t(labels, torch.long)).half()
  return cache_keys, cache_values


def search_hp_tip(cache_keys, cache_values, features, labels, clip_weights, adapter=None,
                  search_scale=(50, 50), search_step=(200, 200), record=None):
  """The reference's double loop; ``record`` (a dict) collects every pair's accuracy."""
  beta_list = [i * (search_scale[0] - 0.1) / search_step[0] + 0.1 for i in range(search_step[0])]
  alpha_list = [i * (search_scale[1] - 0.1) / search_step[1] + 0.1
                for i in range(search_step[1])]
  best_acc = 0
  best_beta, best_alpha = 0, 0
  with torch.no_grad():
    for beta in beta_list:
      for alpha in alpha_list:
        if adapter:
          affinity = adapter(features)
        else:
          affinity = features @ cache_keys
        cache_logits = ((-1) * (beta - beta * affinity)).exp() @ cache_values.float()
        clip_logits = SCALE * features @ clip_weights
        tip_logits = clip_logits + cache_logits * alpha
        acc = cls_acc(tip_logits, labels)
        if record is not None:
          record[(beta, alpha)] = acc
        if acc > best_acc:
          best_acc = acc
          best_beta = beta
          best_alpha = alpha
  return best_beta, best_alpha


def tip_logits(features, cache_keys, cache_values, clip_weights, beta, alpha, adapter=None):
  with torch.no_grad():
    affinity = adapter(features) if adapter else features @ cache_keys
    cache_logits = ((-1) * (beta - beta * affinity)).exp() @ cache_values.float()
    return SCALE * features @ clip_weights + cache_logits * alpha


def search_init_hp(alpha, beta, epoch_features, labels, cache_keys, cache_values, clip_weights,
                   lr=0.001, train_epoch=20):
  """tip_adapter_biomedclip.py:199-241 with the loader replaced by ``epoch_features(e)``.

  ``nn.Parameter(cache_keys.t())`` wraps a VIEW of ``cache_keys`` (no copy), so AdamW's in-place
  updates write into ``cache_keys`` itself: every call continues from the matrix the previous
  calls left (the reference's quirk, kept literally).
  """
  adapter = nn.Linear(cache_keys.shape[0], cache_keys.shape[1], bias=False)
  adapter.weight = nn.Parameter(cache_keys.t())
  optimizer = torch.optim.AdamW(adapter.parameters(), lr=lr, eps=1e-4)
  scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, train_epoch * 1)
  for val_idx in range(train_epoch):
    adapter.train()
    image_features = epoch_features(val_idx)
    affinity = adapter(image_features)
    cache_logits = ((-1) * (beta - beta * affinity.float())).exp() @ cache_values.float()
    clip_logits = SCALE * image_features @ clip_weights
    tip_logits_ = clip_logits + cache_logits * alpha
    loss = F.cross_entropy(tip_logits_, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    adapter.eval()
  return adapter


def tip_adapter_f(cache_keys, cache_values, epoch_features, labels, val_features, val_labels,
                  clip_weights, lr=0.001, train_epoch=20, init_beta=1, init_alpha=1,
                  init_alpha_scale=10, search_step=(200, 200), share_keys=True):
  """tip_adapter_biomedclip.py:95-187 (the ``finetune`` branch with ``grid_search: True``).

  ``epoch_features(a, e)``: the normalised augmented training features of epoch e of the a-th
  alpha0 fine-tune (a = init_alpha_scale: the main training loop); one full batch per epoch.
  ``share_keys=False`` clones the keys for every fine-tune (the independent fine-tunes the
  method's description implies; NOT the reference code). Returns a dict: the final adapter, the
  chosen alpha0 (-1: none beat 0 %), every alpha0's val accuracy, the searched (beta, alpha),
  the last alpha0 fine-tune's matrix, the matrix the main loop starts from (the chosen adapter's),
  and whether the main loop saved a best epoch (the
  reference's ``torch.load`` of best_F fails, or reads a stale file, when it did not).
  """
  keys = cache_keys if share_keys else None
  beta, alpha = init_beta, init_alpha
  adapter = nn.Linear(cache_keys.shape[0], cache_keys.shape[1], bias=False)
  adapter.weight = nn.Parameter(cache_keys.t())
  optimizer = torch.optim.AdamW(adapter.parameters(), lr=lr, eps=1e-4)
  scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, train_epoch * 1)

  best_acc, chosen, accs = 0.0, -1, []
  for init_alpha_ in range(init_alpha_scale):
    start = keys if share_keys else cache_keys.clone()
    init_adapter = search_init_hp(init_alpha_, beta, lambda e: epoch_features(init_alpha_, e),
                                  labels, start, cache_values, clip_weights, lr, train_epoch)
    with torch.no_grad():
      affinity = init_adapter(val_features)
      cache_logits = ((-1) * (beta - beta * affinity.float())).exp() @ cache_values.float()
      clip_logits = SCALE * val_features @ clip_weights
      acc = cls_acc(clip_logits + cache_logits * init_alpha_, val_labels)
    accs.append(acc)
    if acc > best_acc:
      best_acc, alpha, adapter, chosen = acc, init_alpha_, init_adapter, init_alpha_
  last_alpha0 = init_adapter.weight.detach().clone()
  main_start = adapter.weight.detach().clone()

  # The main training: ``optimizer`` holds the FIRST adapter's parameter; when an alpha0 was
  # chosen, ``adapter`` is another module whose parameter never reaches the optimizer.
  best_acc, saved = 0.0, None
  for train_idx in range(train_epoch):
    adapter.train()
    image_features = epoch_features(init_alpha_scale, train_idx)
    affinity = adapter(image_features)
    cache_logits = ((-1) * (beta - beta * affinity.float())).exp() @ cache_values.float()
    clip_logits = SCALE * image_features @ clip_weights
    loss = F.cross_entropy(clip_logits + cache_logits * alpha, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    adapter.eval()
    with torch.no_grad():
      affinity = adapter(val_features)
      cache_logits = ((-1) * (beta - beta * affinity.float())).exp() @ cache_values.float()
      acc = cls_acc(SCALE * val_features @ clip_weights + cache_logits * alpha, val_labels)
    if acc > best_acc:
      best_acc, saved = acc, adapter.weight.detach().clone()  # torch.save(adapter.weight, ...)
  if saved is not None:
    adapter.weight = nn.Parameter(saved)  # torch.load(best_F) (a Parameter was saved)
  beta_s, alpha_s = search_hp_tip(None, cache_values, val_features, val_labels, clip_weights,
                                  adapter=adapter, search_step=search_step)
  return dict(adapter=adapter, alpha0=chosen, alpha0_acc=accs, beta=beta_s, alpha=alpha_s,
              last_alpha0=last_alpha0, main_start=main_start, saved=saved is not None)


class ConstantWarmupScheduler(_LRScheduler):
  """Dassl's ``_BaseWarmupScheduler`` + ``ConstantWarmupScheduler`` (dassl/optim/lr_scheduler.py).
  """

  def __init__(self, optimizer, successor, warmup_epoch, cons_lr, last_epoch=-1):
    self.successor = successor
    self.warmup_epoch = warmup_epoch
    self.cons_lr = cons_lr
    super().__init__(optimizer, last_epoch)

  def get_lr(self):
    if self.last_epoch >= self.warmup_epoch:
      return self.successor.get_last_lr()
    return [self.cons_lr for _ in self.base_lrs]

  def step(self, epoch=None):
    if self.last_epoch >= self.warmup_epoch:
      self.successor.step(epoch)
      self._last_lr = self.successor.get_last_lr()
    else:
      super().step(epoch)


class Adapter(nn.Module):
  """The reference's visual adapter: Linear(d, d/4) -> ReLU -> Linear(d/4, d) -> ReLU, no bias."""

  def __init__(self, c_in, reduction=4):
    super().__init__()
    self.fc = nn.Sequential(nn.Linear(c_in, c_in // reduction, bias=False), nn.ReLU(inplace=True),
                            nn.Linear(c_in // reduction, c_in, bias=False), nn.ReLU(inplace=True))

  def forward(self, x):
    return self.fc(x)


def clip_adapter_logits(adapter, image_features, text_features, logit_scale, alpha=0.5):
  x = adapter(image_features)
  image_features = alpha * x + (1 - alpha) * image_features
  return logit_scale * image_features @ text_features.t()


def clip_adapter_sgd(lr=0.01, max_epoch=20, warmup_lr=1e-5, params=None):
  """SGD(lr, momentum 0, wd 0) + Dassl's warm-up around CosineAnnealingLR(T_max=max_epoch)."""
  params = params if params is not None else [nn.Parameter(torch.zeros(1))]
  optimizer = torch.optim.SGD(params, lr=lr, momentum=0.0, weight_decay=0.0)
  cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(max_epoch))
  return optimizer, ConstantWarmupScheduler(optimizer, cosine, 1, warmup_lr)


def calculate_lr_alpha(features, clip_weights):
  ftT = features @ clip_weights
  temp = torch.sum(torch.pow(ftT, 2), dim=0)
  max_sum = max(temp)
  return features.shape[0] / (max_sum * 4)


def get_one_hot(y_s, num_classes):
  one_hot = torch.zeros(list(y_s.size()) + [num_classes], dtype=torch.float16)
  one_hot.scatter_(-1, y_s.unsqueeze(-1), 1)
  return one_hot


def compute_centroids_alpha(z_s, y_s):
  one_hot = get_one_hot(y_s, num_classes=y_s.unique().size(0))
  return (one_hot * z_s / one_hot.sum(-2, keepdim=True)).sum(1)


def compute_centroids(z_s, y_s):
  """The fp16 bmm of the one-hot and the fp16 features (the BiomedCLIP port's fp16 cast)."""
  one_hot = get_one_hot(y_s, num_classes=y_s.unique().size(0)).transpose(1, 2)
  return one_hot.bmm(z_s.half())


def calculate_init_alpha(features, labels, shots, clip_weights):
  alpha_tilde = compute_centroids_alpha((features @ clip_weights).unsqueeze(0),
                                        labels.unsqueeze(0))[0]
  alpha_tilde = alpha_tilde.double() * shots
  alpha_init = 250 / shots * alpha_tilde
  return torch.mean(alpha_init)


def calculate_lr_w(features):
  ff_t = features.T @ features
  w, _ = eigh(ff_t.numpy())
  return (4 * features.shape[0]) / max(w)


def lp_plus_plus(features, labels, val_features, val_labels, text_weights, shots, bias,
                 epochs=300):
  """The reference's LP++ loop; returns the state of the last >=-best val epoch and a log."""
  centroids = compute_centroids(features.unsqueeze(0), labels.unsqueeze(0))
  classifier = nn.Linear(features.shape[1], int(features.shape[0] / shots), bias=True)
  classifier.weight.data = centroids[0].float()
  classifier.bias.data = t(bias)
  lr_temp = calculate_lr_w(features)
  init_alpha = calculate_init_alpha(features, labels, shots, text_weights)
  alpha_vec = (init_alpha * torch.ones(1, int(features.shape[0] / shots))).float()
  alpha_vec.requires_grad_(True)
  lr_alpha = calculate_lr_alpha(features, text_weights)
  optimizer = torch.optim.SGD(classifier.parameters(), lr_temp, momentum=0.9)
  log = {"lr_w": float(lr_temp), "lr_alpha": float(lr_alpha), "alpha0": float(init_alpha),
         "W0": classifier.weight.detach().clone().numpy(), "alphas": []}
  best_acc = 0.0
  for epoch in range(epochs):
    vision_logits = classifier(features)
    text_logits = features @ text_weights
    logits = vision_logits + torch.ones(features.shape[0], 1) @ alpha_vec * text_logits
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if (epoch + 1) % 10 == 0:
      alpha_vec.data -= lr_alpha * alpha_vec.grad.data
    log["alphas"].append(alpha_vec.detach().clone().numpy()[0])
    with torch.no_grad():
      logits_val = (classifier(val_features) + torch.ones(val_features.shape[0], 1) @ alpha_vec
                    * (val_features @ text_weights))
      acc_val = np.mean(logits_val.argmax(dim=1).numpy() == val_labels.numpy()) * 100.0
    if acc_val >= best_acc:
      best_acc = acc_val
      log["best_epoch"] = epoch
      log["best"] = {"W": classifier.weight.detach().clone().numpy(),
                     "b": classifier.bias.detach().clone().numpy(),
                     "alpha": alpha_vec.detach().clone().numpy()[0]}
  return log
