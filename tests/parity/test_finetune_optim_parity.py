"""finetune's two optimisation loops vs PyTorch transcriptions of the notebook's code, on a toy
tower (a Linear) + head: same data, batches and initial weights, several epochs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F

from biomedjax.methods import finetune

EPOCHS, STEPS, D_IN, D, C = 3, 4, 8, 6, 3


def _data():
  rng = np.random.default_rng(0)
  xs = rng.normal(size=(EPOCHS, STEPS, 5, D_IN)).astype(np.float32)
  ys = (rng.random((EPOCHS, STEPS, 5, C)) < 0.4).astype(np.float32)
  w = rng.normal(size=(D_IN, D)).astype(np.float32) * 0.3
  k = rng.normal(size=(D, C)).astype(np.float32) * 0.3
  b = rng.normal(size=(C,)).astype(np.float32) * 0.1
  return xs, ys, w, k, b


def _torch(loop, opts, cfg, xs, ys, w, k, b):
  """``train_eval_biomedclip(mode="finetune")``: the notebook version (warm-up test commented
  out) or the paper's (warm-up test active, ``warmup_epochs`` head-only epochs)."""
  visual = torch.nn.Linear(D_IN, D, bias=False)
  head = torch.nn.Linear(D, C)
  with torch.no_grad():
    visual.weight.copy_(torch.from_numpy(w.T.copy()))
    head.weight.copy_(torch.from_numpy(k.T.copy()))
    head.bias.copy_(torch.from_numpy(b.copy()))
  params = list(visual.parameters()) + list(head.parameters())
  visual.requires_grad_(False)
  optim = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
  sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=cfg["epochs"])
  for epoch in range(1, EPOCHS + 1):
    if loop == "notebook" or epoch == opts.warmup_epochs + 1:
      visual.requires_grad_(True)
      optim = torch.optim.AdamW(params, lr=cfg["lr"] * 0.1, weight_decay=cfg["weight_decay"])
      sched = torch.optim.lr_scheduler.CosineAnnealingLR(
          optim, T_max=cfg["epochs"] - opts.warmup_epochs)
    for x, y in zip(xs[epoch - 1], ys[epoch - 1]):
      optim.zero_grad(set_to_none=True)
      loss = F.binary_cross_entropy_with_logits(head(visual(torch.from_numpy(x))),
                                                torch.from_numpy(y))
      loss.backward()
      optim.step()
    sched.step()
  return visual.weight.detach().numpy().T, head.weight.detach().numpy().T, head.bias.detach().numpy()


@pytest.mark.parametrize("loop", finetune.LOOPS)
def test_optimizer_loops_match_notebook(loop):
  xs, ys, w, k, b = _data()
  opts = dataclasses.replace(finetune.Options(), loop=loop)
  cfg = dict(lr=3e-2, weight_decay=1e-2, epochs=5)
  tx, schedule = finetune.make_optimizer(opts, cfg, STEPS)
  params = {"visual": {"kernel": jnp.asarray(w)}, "head": {"kernel": jnp.asarray(k),
                                                         "bias": jnp.asarray(b)}}
  state = tx.init(params)

  @jax.jit
  def step(params, state, x, y):
    def loss(p):
      return jnp.mean(optax.sigmoid_binary_cross_entropy(
          x @ p["visual"]["kernel"] @ p["head"]["kernel"] + p["head"]["bias"], y))
    grads = jax.grad(loss)(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  for e in range(EPOCHS):
    for s in range(STEPS):
      params, state = step(params, state, xs[e, s], ys[e, s])
  w_ref, k_ref, b_ref = _torch(loop, opts, cfg, xs, ys, w, k, b)
  lrs = [float(schedule(e * STEPS)) for e in range(EPOCHS)]
  expected = ([3e-3] * EPOCHS if loop == "notebook" else
              [3e-2] + [3e-3 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(EPOCHS - 1)])
  np.testing.assert_allclose(lrs, expected, rtol=1e-6)
  np.testing.assert_allclose(params["visual"]["kernel"], w_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(params["head"]["kernel"], k_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(params["head"]["bias"], b_ref, rtol=1e-5, atol=1e-6)
  assert not np.allclose(params["visual"]["kernel"], w)  # the tower did train
