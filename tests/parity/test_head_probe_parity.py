"""head_probe's training loop vs a PyTorch transcription of the IU-Xray notebook's linear probe
(``train_eval_biomedclip(mode="linearprobe")``) on fixed features, same init and batch orders."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biomedjax.methods import head_probe


def _reference(head0, train_x, train_y, val_x, val_y, orders, opts):
  """The notebook's loop with the visual tower frozen (features fixed), float32, no AMP."""
  model = torch.nn.Linear(train_x.shape[1], train_y.shape[1])
  with torch.no_grad():
    model.weight.copy_(torch.from_numpy(np.array(head0["kernel"]).T))
    model.bias.copy_(torch.from_numpy(np.array(head0["bias"])))
  optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
  sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=opts.t_max)
  tx, ty = torch.from_numpy(train_x), torch.from_numpy(train_y)
  vx, vy = torch.from_numpy(val_x), torch.from_numpy(val_y)
  best_val, patience_ctr, best_state, history = float("inf"), 0, None, []
  for epoch in range(opts.epochs):
    for i in range(0, len(orders[epoch]), opts.batch_size):
      idx = torch.from_numpy(orders[epoch][i:i + opts.batch_size])
      optim.zero_grad(set_to_none=True)
      loss = F.binary_cross_entropy_with_logits(model(tx[idx]), ty[idx])
      loss.backward()
      optim.step()
    with torch.no_grad():
      losses = [F.binary_cross_entropy_with_logits(model(vx[i:i + opts.batch_size]),
                                                   vy[i:i + opts.batch_size]).item()
                for i in range(0, len(vx), opts.batch_size)]
    val_loss = float(np.mean(losses))
    sched.step()
    history.append(val_loss)
    if val_loss < best_val - 1e-4:
      best_val, patience_ctr = val_loss, 0
      best_state = copy.deepcopy(model.state_dict())
    else:
      patience_ctr += 1
      if patience_ctr >= opts.patience:
        break
  model.load_state_dict(best_state)
  return model.weight.detach().numpy().T, model.bias.detach().numpy(), history


@pytest.mark.parametrize("lr, stops_early", [(1e-4, False), (0.3, True)])
def test_training_loop_matches_notebook(lr, stops_early):
  rng = np.random.default_rng(0)
  d, c = 16, 5
  w_true = rng.normal(size=(d, c))
  train_x = rng.normal(size=(100, d)).astype(np.float32) * 3
  val_x = rng.normal(size=(37, d)).astype(np.float32) * 3
  train_y = (train_x @ w_true + rng.normal(size=(100, c)) * 4 > 0).astype(np.float32)
  val_y = (val_x @ w_true + rng.normal(size=(37, c)) * 4 > 0).astype(np.float32)
  opts = dataclasses.replace(head_probe.Options(), lr=lr, patience=2)
  orders = [rng.permutation(100) for _ in range(opts.epochs)]
  import jax
  head0 = head_probe.init_head(jax.random.key(0), d, c)
  head, history = head_probe.train_head(train_x, train_y, val_x, val_y, opts, head=head0,
                                         orders=orders)
  w_ref, b_ref, val_ref = _reference(head0, train_x, train_y, val_x, val_y, orders, opts)
  assert len(history) == len(val_ref) and (len(history) < opts.epochs) == stops_early
  np.testing.assert_allclose([h["val_loss"] for h in history], val_ref, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(head["kernel"]), w_ref, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.asarray(head["bias"]), b_ref, rtol=1e-4, atol=1e-5)
  assert [h["lr"] for h in history][:3] == pytest.approx(
      [lr * (1 + np.cos(np.pi * e / 10)) / 2 for e in range(3)], rel=1e-6)
