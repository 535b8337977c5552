"""Runs of one setting as one computation (biomedjax/train/fit_pack.py, ``Method.fit_runs``).

Each adapter's vmapped ``fit_runs`` equals its ``fit`` run by run (features and keys differ per
run, val is shared); ``fit_pack.run`` writes the same results and trained state as three separate
``train_and_evaluate`` runs (tiny random backbone, synthetic images, shortened schedules).
"""

import json

import jax
import numpy as np
import pytest

from biomedjax.tools import trained
from biomedjax.methods.base import FeatureSet
from biomedjax.train import fit_pack, loop
from configs import clip_adapter, coop, linear_probe, tip_adapter
from tests import adapter_method_checks as checks

SHORT = {  # method -> config.method overrides that keep fits to a fraction of a second
    "clip_adapter": {"epochs": 3},
    "tip_adapter": {"search_step": (40, 30)},
    "tip_adapter_f": {"epochs": 3, "init_alpha_scale": 3, "search_step": (40, 30)},
    "lp_plus_plus": {"epochs": 30},
}


# Seconds of CPU each, mostly compiling two programs (fit, fit_runs): Tip-Adapter (the shortest)
# stays in the default suite, the other three are marked slow.
# Tip-Adapter-F under both alpha0 schemes: the reference's one shared matrix and the
# independent fine-tunes.
@pytest.mark.parametrize("name,extra", [
    pytest.param("clip_adapter", {}, marks=pytest.mark.slow),
    pytest.param("lp_plus_plus", {}, marks=pytest.mark.slow), ("tip_adapter", {}),
    pytest.param("tip_adapter_f", {"shared_keys": True}, marks=pytest.mark.slow),
    pytest.param("tip_adapter_f", {"shared_keys": False}, marks=pytest.mark.slow)])
def test_fit_runs_equal_fit_run_by_run(name, extra, tiny):
  method, frozen = checks.build(name, tiny, **SHORT[name], **extra)
  assert method.packs_runs
  dim = frozen["text_features"].shape[1]
  views = max(1, method.fit_views)
  runs = [checks.features(dim, views=views, seed=s) for s in (1, 2, 3)]
  val = runs[0][1]  # shared, as in the harness
  trains = [FeatureSet(t.features, t.labels) for t, _, _ in runs]
  rngs = [jax.random.fold_in(jax.random.key(s), 2) for s in (1, 2, 3)]
  packed = method.fit_runs(frozen, trains, val, rngs)
  for train, rng, got in zip(trains, rngs, packed):
    want = method.fit(frozen, train, val, rng=rng)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
  # the runs do differ (own views / keys), so equality above is not vacuous
  leaves = [jax.tree.leaves(p) for p in packed]
  assert not all(np.allclose(a, b) for a, b in zip(leaves[0], leaves[1]))


def _config(seed, synthetic_split, **method):
  c = tip_adapter.get_config(f"dataset=synth,shots=2,seed={seed}")
  c.model.preset = "tiny"
  c.data.split_file, c.data.image_root = synthetic_split
  c.data.test_batch_size = 32
  c.eval.reliability = "none"
  c.train.progress = False
  for k, v in method.items():
    c.method[k] = v
  return c


@pytest.fixture(scope="module")
def synthetic_split(tmp_path_factory):
  from biomedjax.data import synthetic
  root = tmp_path_factory.mktemp("synth")
  split = synthetic.generate(root, num_classes=3, per_class=10, size=32, seed=0)
  return str(split), str(root)


def test_packable():
  a = [clip_adapter.get_config(f"shots=4,seed={s}") for s in (1, 2, 3)]
  assert fit_pack.packable(a)
  assert not fit_pack.packable(a[:1])                                   # one run
  assert not fit_pack.packable([a[0], a[0]])                            # same seed twice
  b = clip_adapter.get_config("shots=8,seed=2")
  assert not fit_pack.packable([a[0], b])                               # another setting
  own = [clip_adapter.get_config(f"shots=4,seed={s}") for s in (1, 2)]
  for c in own:
    c.data.split_seed = 0
  assert not fit_pack.packable(own)                                     # own split per seed
  assert not fit_pack.packable([linear_probe.get_config(f"seed={s}") for s in (1, 2)])
  assert not fit_pack.packable([coop.get_config(f"seed={s}") for s in (1, 2)])
  assert fit_pack.packable([tip_adapter.get_config(f"seed={s}") for s in (1, 2)])


def test_packed_runs_equal_separate_runs(synthetic_split, tmp_path):
  """tip_adapter, 2 seeds: the runs differ by their augmented views (cache keys), share val."""
  configs = [_config(s, synthetic_split, search_step=(20, 20)) for s in (1, 2)]
  separate = [loop.train_and_evaluate(c, tmp_path / f"sep{c.seed}") for c in configs]
  packed_dirs = [tmp_path / f"packed{c.seed}" for c in configs]
  packed = fit_pack.run(configs, packed_dirs)
  for c, want, got, wd in zip(configs, separate, packed, packed_dirs):
    assert got["seed"] == c.seed and got["harness"] is True
    for split in ("val", "test"):
      for k, v in want[split].items():
        if isinstance(v, float):
          assert got[split][k] == pytest.approx(v, rel=1e-5, abs=1e-5), (split, k)
    state, _ = trained.load(wd / trained.STATE_FILE)
    want_state, _ = trained.load(tmp_path / f"sep{c.seed}" / trained.STATE_FILE)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state,
                 want_state)
    on_disk = json.loads((wd / "results.json").read_text())
    assert on_disk["test"]["accuracy"] == got["test"]["accuracy"]
    for f in ("config.json", "fewshot_selection.json", "predictions/test.npz", "results.md"):
      assert (wd / f).exists(), f
  states = [trained.load(w / trained.STATE_FILE)[0]["keys"] for w in packed_dirs]
  assert not np.allclose(states[0], states[1])  # the seeds differ
  assert fit_pack.run(configs, packed_dirs) == [json.loads((w / "results.json").read_text())
                                                for w in packed_dirs]  # finished: a no-op
