"""PyTorch transcription of CalibPrompt's loss registry (``trainers/classification/losses.py``).

Written from the reference formulas with ``.cuda()`` / ``torch.device("cuda")`` replaced by the
CPU; everything else (including MMCE's top-k selection and its conditionals) as the reference.
"""

import torch
import torch.nn.functional as F


def ce(logits, label):
  return F.cross_entropy(logits, label)


def ls(logits, label, alpha=0.1):
  pred = logits.log_softmax(dim=-1)
  c = pred.shape[-1]
  with torch.no_grad():
    true_dist = torch.zeros_like(pred)
    true_dist.fill_(alpha / (c - 1))
    true_dist.scatter_(1, label.data.unsqueeze(1), 1.0 - alpha)
  return torch.mean(torch.sum(-true_dist * pred, dim=-1))


def smac(logits, label, alpha=0.1):
  output = torch.softmax(logits, dim=1)
  _, classes = output.shape
  loss = torch.tensor(0.0, dtype=logits.dtype)
  for c in range(classes):
    avg_count = (label == c).to(logits.dtype).mean()
    smooth_freq = avg_count * (1 - alpha) + (1 - avg_count) * (alpha / (classes - 1))
    loss = loss + torch.abs(torch.mean(output[:, c]) - smooth_freq)
  return loss / classes


def mdca(logits, label):
  output = torch.softmax(logits, dim=1)
  loss = torch.tensor(0.0, dtype=logits.dtype)
  _, classes = output.shape
  for c in range(classes):
    loss = loss + torch.abs(torch.mean(output[:, c]) - (label == c).to(logits.dtype).mean())
  return loss / classes


def angular_separation(features):
  n = features.shape[0]
  sim = torch.matmul(features, features.T)
  sim = sim.masked_fill(torch.eye(n).bool(), 0)
  return (sim.sum(dim=1) / (n - 1)).mean()


def focal(logits, label, gamma=3.0):
  logpt = F.log_softmax(logits, dim=1).gather(1, label.view(-1, 1)).view(-1)
  return (-1 * (1 - logpt.exp()) ** gamma * logpt).mean()


def dca(logits, label):
  conf, pred = torch.max(F.softmax(logits, dim=1), 1)
  return torch.abs(conf.float().mean() - pred.eq(label).float().mean())


def _kernel(matrix):
  return torch.exp(-1.0 * torch.abs(matrix[:, :, 0] - matrix[:, :, 1]) / 0.4)


def _pairs(t1, t2):
  c = t1.unsqueeze(1).repeat(1, t1.shape[0]).unsqueeze(2)
  i = t2.unsqueeze(1).repeat(1, t2.shape[0]).unsqueeze(2)
  cc = torch.cat([c, c.permute(1, 0, 2)], dim=2)
  ii = torch.cat([i, i.permute(1, 0, 2)], dim=2)
  c1 = t1.unsqueeze(1).repeat(1, t2.shape[0]).unsqueeze(2)
  i1 = t2.unsqueeze(1).repeat(1, t1.shape[0]).unsqueeze(2)
  return cc, ii, torch.cat([c1, i1.permute(1, 0, 2)], dim=2)


def mmce(logits, target):
  probs, labels = torch.max(F.softmax(logits, dim=1), 1)
  mask = torch.where(torch.eq(labels, target), torch.ones(labels.shape),
                     torch.zeros(labels.shape)).to(logits.dtype)
  k = torch.sum(mask).type(torch.int64)
  k_p = torch.sum(1.0 - mask).type(torch.int64)
  cond_k = torch.where(torch.eq(k, 0), torch.tensor(0), torch.tensor(1))
  cond_k_p = torch.where(torch.eq(k_p, 0), torch.tensor(0), torch.tensor(1))
  k = torch.max(k, torch.tensor(1)) * cond_k * cond_k_p + (1 - cond_k * cond_k_p) * 2
  k_p = torch.max(k_p, torch.tensor(1)) * cond_k_p * cond_k + (
      (1 - cond_k_p * cond_k) * (mask.shape[0] - 2))
  correct_prob, _ = torch.topk(probs * mask, int(k))
  incorrect_prob, _ = torch.topk(probs * (1 - mask), int(k_p))
  cc, ii, ci = _pairs(correct_prob, incorrect_prob)
  w_cc = torch.mm((1.0 - correct_prob).unsqueeze(1), (1.0 - correct_prob).unsqueeze(0))
  w_ii = torch.mm(incorrect_prob.unsqueeze(1), incorrect_prob.unsqueeze(0))
  w_ci = torch.mm((1.0 - correct_prob).unsqueeze(1), incorrect_prob.unsqueeze(0))
  cc_v = torch.mean(_kernel(cc) * w_cc)
  ii_v = torch.mean(_kernel(ii) * w_ii)
  ci_v = torch.mean(_kernel(ci) * w_ci)
  m, n = torch.sum(mask), torch.sum(1.0 - mask)
  err = 1.0 / (m * m + 1e-5) * torch.sum(cc_v)
  err = err + 1.0 / (n * n + 1e-5) * torch.sum(ii_v)
  err = err - 2.0 / (m * n + 1e-5) * torch.sum(ci_v)
  gate = (cond_k * cond_k_p).to(logits.dtype).detach()
  return torch.max(gate * torch.sqrt(err + 1e-10), torch.tensor(0.0, dtype=logits.dtype))


def mbls(logits, label, margin=10.0, alpha=0.1):
  diff = logits.max(dim=1, keepdim=True)[0].expand_as(logits) - logits
  return F.cross_entropy(logits, label) + alpha * F.relu(diff - margin).mean()


def logitnorm(logits, label, t=1.0):
  norms = torch.norm(logits, p=2, dim=-1, keepdim=True) + 1e-7
  return F.cross_entropy(torch.div(logits, norms) / t, label)


LOGIT_LOSSES = {"ce": ce, "smac": smac, "mdca": mdca, "focal": focal, "dca": dca, "mmce": mmce,
                "mbls": mbls, "logitnorm": logitnorm}


# --- The rest of the registry (losses.py:306-484), transcribed the same way. ---


def eccv_penalty(logits, label, zero_shot_logits=None):
  zs_pred = zero_shot_logits
  if zs_pred is None:
    return torch.tensor(0.0)
  b, c = zs_pred.shape
  min_zs, max_zs = torch.min(zs_pred, 1)[0].unsqueeze(1), torch.max(zs_pred, 1)[0].unsqueeze(1)
  constr1 = F.relu(logits - max_zs.repeat(1, c)).mean()
  constr2 = F.relu(min_zs.repeat(1, c) - logits).mean()
  return constr1 + constr2


def eccv_zs(logits, label, zero_shot_logits=None):
  zs_pred = zero_shot_logits
  if zs_pred is None:
    return F.cross_entropy(logits, label)
  b, c = zs_pred.shape
  min_op, max_op = torch.min(logits, 1)[0].unsqueeze(1), torch.max(logits, 1)[0].unsqueeze(1)
  min_zs, max_zs = torch.min(zs_pred, 1)[0].unsqueeze(1), torch.max(zs_pred, 1)[0].unsqueeze(1)
  eps = 1e-6
  range_op = max_op - min_op
  range_op = torch.clamp(range_op, min=eps)
  op_norm = (logits - min_op) / range_op
  op_norm = torch.clamp(op_norm, min=0.0, max=1.0)
  range_zs = torch.clamp(max_zs - min_zs, min=eps)
  op_norm = op_norm * range_zs + min_zs
  return F.cross_entropy(op_norm, label)


def margin_mean_var(logits, label):
  alpha = 0.1
  beta = 0.01
  B, C = logits.shape
  true_scores = logits[torch.arange(B), label]
  tmp = logits.clone()
  tmp[torch.arange(B), label] = -float("inf")
  runner_up = tmp.max(dim=1).values
  margins = true_scores - runner_up
  mean_margin = margins.mean()
  var_margin = margins.var(unbiased=False)
  return -alpha * mean_margin + beta * var_margin


def text_moment_matching(logits, label, text_features=None, zero_shot_text_features=None):
  if text_features is None or zero_shot_text_features is None:
    return torch.tensor(0.0)
  tuned = text_features
  frozen = zero_shot_text_features
  B, D = tuned.shape
  mu_t = tuned.mean(dim=0, keepdim=True)
  mu_f = frozen.mean(dim=0, keepdim=True)
  mean_cost = F.mse_loss(mu_t, mu_f, reduction="sum")
  Ct = tuned - mu_t
  Cf = frozen - mu_f
  cov_t = Ct.t() @ Ct / B
  cov_f = Cf.t() @ Cf / B
  cov_cost = (cov_t - cov_f).pow(2).sum()
  return mean_cost + cov_cost


# The registry by its reference names, each called as coop.py:262-290 calls it.
REGISTRY = {"CE": ce, "DCA": dca, "MDCA": mdca, "LS": ls, "FL": focal, "MMCE": mmce,
            "AS": angular_separation, "SMAC": smac, "ECCV_PENALTY": eccv_penalty,
            "ECCV_ZS": eccv_zs, "MBLS": mbls, "LOGITNORM": logitnorm,
            "MARGIN_MEAN_VAR": margin_mean_var, "TEXT_MOMENT_MATCHING": text_moment_matching}


def compute_losses(enabled, weights, logits, label, alpha, text_features=None,
                   zero_shot_logits=None, zero_shot_text_features=None):
  """coop.py:229-298 ``CustomCLIP.compute_losses``: the weighted sum of the enabled losses only
  (LS and SMAC reading ``alpha``, the driver's one value for both)."""
  total = 0.0
  for name in enabled:
    fn = REGISTRY[name]
    if name == "AS":
      value = fn(text_features)
    elif name in ("LS", "SMAC"):
      value = fn(logits, label, alpha)
    elif name in ("ECCV_PENALTY", "ECCV_ZS"):
      value = fn(logits, label, zero_shot_logits=zero_shot_logits)
    elif name == "TEXT_MOMENT_MATCHING":
      value = fn(logits, label, text_features=text_features,
                 zero_shot_text_features=zero_shot_text_features)
    else:
      value = fn(logits, label)
    total = total + weights[name] * value
  return total
