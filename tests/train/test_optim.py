"""biomedjax.train.optim vs torch.optim + torch.optim.lr_scheduler with a Dassl-style warmup."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from biomedjax.train import optim

torch = pytest.importorskip("torch")

EPOCHS, STEPS_PER_EPOCH = 5, 3


def _cfg(**overrides):
  base = dict(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, epochs=EPOCHS,
              warmup_epochs=1, warmup_lr=1e-5, schedule="cosine", grad_clip=0.0)
  return ml_collections.ConfigDict({**base, **overrides})


class DasslConstantWarmup:
  """Dassl's ConstantWarmupScheduler (WARMUP_RECOUNT=True) as its source behaves, per epoch.

  Epochs < W run at ``cons_lr`` and the successor is not stepped; the first ``step()`` at the end
  of epoch W-1 hands over the successor's last LR (the base LR), later ``step()`` calls step the
  successor.
  """

  def __init__(self, opt, successor, warmup_epochs, cons_lr):
    self.opt, self.successor, self.warmup, self.cons_lr = opt, successor, warmup_epochs, cons_lr
    self.epoch = 0
    self._set(cons_lr if warmup_epochs > 0 else successor.get_last_lr()[0])

  def _set(self, lr):
    for group in self.opt.param_groups:
      group["lr"] = lr

  def step(self):
    if self.epoch >= self.warmup:
      self.successor.step()
    else:
      self.epoch += 1
      self._set(self.cons_lr if self.epoch < self.warmup else self.successor.get_last_lr()[0])


def _problem():
  """A small least-squares problem with a different batch at every step."""
  rng = np.random.default_rng(0)
  params = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=(3,))}
  batches = [(rng.normal(size=(8, 4)), rng.normal(size=(8, 3)))
             for _ in range(EPOCHS * STEPS_PER_EPOCH)]
  return params, batches


def _loss(p, x, y):
  return 0.5 * ((x @ p["w"] + p["b"] - y) ** 2).sum()


def _run_optax(cfg, params, batches):
  """Runs in float64 (as the torch side) so a 1e-6 tolerance tests the algorithm, not rounding."""
  with jax.enable_x64(True):
    return _run_optax_steps(cfg, params, batches)


def _run_optax_steps(cfg, params, batches):
  tx, schedule = optim.make_optimizer(cfg, STEPS_PER_EPOCH)
  params = jax.tree.map(jnp.asarray, params)
  state = tx.init(params)

  @jax.jit
  def train_step(params, state, x, y):
    updates, state = tx.update(jax.grad(_loss)(params, x, y), state, params)
    return optax.apply_updates(params, updates), state

  lrs = []
  for step, (x, y) in enumerate(batches):
    assert params["w"].dtype == jnp.float64
    params, state = train_step(params, state, x, y)
    lrs.append(float(schedule(step)))
  return jax.tree.map(np.asarray, params), lrs


def _run_torch(cfg, params, batches):
  p = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
  groups = [p["w"], p["b"]]
  if cfg.name == "sgd":
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
  elif cfg.name == "adam":
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
  else:
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
  if cfg.schedule == "cosine":
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=float(cfg.epochs))
  else:
    successor = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
  scheduler = DasslConstantWarmup(opt, successor, cfg.warmup_epochs, cfg.warmup_lr)
  lrs = []
  for step, (x, y) in enumerate(batches):
    opt.zero_grad()
    out = torch.from_numpy(x) @ p["w"] + p["b"]
    (0.5 * ((out - torch.from_numpy(y)) ** 2).sum()).backward()
    if cfg.grad_clip > 0:
      # Clip by global norm written out: torch's clip_grad_norm_ adds 1e-6 to the norm.
      norm = torch.sqrt(sum((g.grad ** 2).sum() for g in groups))
      if norm > cfg.grad_clip:
        for g in groups:
          g.grad.mul_(cfg.grad_clip / norm)
    lrs.append(opt.param_groups[0]["lr"])
    opt.step()
    if (step + 1) % STEPS_PER_EPOCH == 0:
      scheduler.step()
  return {k: v.detach().numpy() for k, v in p.items()}, lrs


@pytest.mark.parametrize("overrides", [
    {},
    dict(weight_decay=0.05),  # Large decay: makes coupled-vs-decoupled L2 visible.
    dict(schedule="constant"),
    dict(warmup_epochs=2),
    dict(warmup_epochs=0),
    dict(name="adam", lr=0.01, weight_decay=0.05),
    dict(name="adamw", lr=0.01, weight_decay=0.05),
    dict(grad_clip=1.0),
])
def test_matches_torch(overrides):
  cfg = _cfg(**overrides)
  params, batches = _problem()
  ours, our_lrs = _run_optax(cfg, params, batches)
  ref, ref_lrs = _run_torch(cfg, params, batches)
  np.testing.assert_allclose(our_lrs, ref_lrs, rtol=1e-6)
  for k in ref:
    # float64 on both sides: only summation-order rounding remains.
    np.testing.assert_allclose(ours[k], ref[k], rtol=1e-6, atol=0)
  assert not np.allclose(ours["w"], params["w"])  # The test would be vacuous otherwise.


def test_schedule_values_by_hand():
  _, schedule = optim.make_optimizer(_cfg(lr=0.002, epochs=100), steps_per_epoch=7)
  assert float(schedule(0)) == pytest.approx(1e-5)
  assert float(schedule(6)) == pytest.approx(1e-5)
  assert float(schedule(7)) == pytest.approx(0.002)  # Epoch 1: cosine restarts at the base LR.
  expected = 0.001 * (1 + np.cos(np.pi * 98 / 100))  # Epoch 99, the last one.
  assert float(schedule(99 * 7 + 3)) == pytest.approx(expected, rel=1e-5)


def test_config_errors_name_the_field():
  with pytest.raises(KeyError, match="lrr"):
    optim.make_optimizer(ml_collections.ConfigDict({**_cfg().to_dict(), "lrr": 1.0}), 1)
  with pytest.raises(ValueError, match="'sgdm'"):
    optim.make_optimizer(_cfg(name="sgdm"), 1)
  with pytest.raises(ValueError, match="'linear'"):
    optim.make_optimizer(_cfg(schedule="linear"), 1)
