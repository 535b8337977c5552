"""View streams (biomedjax/train/view_stream.py): precomputed = online, the cache, resume, cached:V.

The engine's own training loop (``loop.train``, one lane) on the demo setup (tiny random backbone, synthetic images, 64
few-shot images at batch 32, 2 epochs = 4 steps), in process: an online run is the reference a
precomputed run must equal (fp32, highest matmul precision, 1e-5 relative). CoOp stands for the
prompt learners: the stream enters through the engine's ``step.method_batch``, the same for every
``inputs="features"`` method. (A BiomedCoOp online-vs-precomputed pair passed too, but its two
step compilations cost ~50 s of CPU, over this file's budget.)
"""

import logging
import os
import signal

import jax
import numpy as np
import pytest

from biomedjax.train import lifecycle, loop, setup, sharding, view_stream
from configs import demo

EPOCHS = 2
DEVICES = 2  # the stream is sharded like the online batches; fewer devices compile faster


def _config(tmp, method="coop", **data):
  cfg = demo.get_config(f"method={method}")
  cfg.optim.epochs = EPOCHS
  cfg.train.progress = False
  cfg.train.log_every_steps = 1
  cfg.data.view_cache = str(tmp / "view_cache")
  cfg.data.encode_batch = 48  # not a multiple of the batch: chunks straddle steps
  cfg.data.update(data)
  return cfg


def _build(cfgs, tmp):
  """One data set and backbone (its vocabulary covers every config's words) for all methods."""
  data = setup.build_data(cfgs[0].data, cfgs[0].seed, tmp)
  words = [w for c in cfgs for w in setup.vocabulary_words(c, data)]
  backbone, params = setup.build_backbone(cfgs[0].model, tmp, words)
  return data, backbone, params


def _env(cfg, shared):
  data, backbone, params = shared
  method = loop.build_method(cfg, backbone, data.classnames, data.kind)
  steps = loop.batch_and_steps(len(data.splits["train"]), cfg)
  mesh = sharding.make_mesh(steps[0], jax.devices()[:DEVICES])
  frozen = sharding.replicate({"backbone": params, **method.prepare(params)}, mesh)
  return dict(method=method, backbone=backbone, frozen=frozen, data=data, mesh=mesh,
              steps=steps)


def _train(env, cfg, workdir):
  run = loop.Run(cfg, workdir, env["data"], env["backbone"], None, env["method"], env["mesh"],
                 env["steps"], env["frozen"], {}, None)
  trainable, (history,), _ = loop.train(run)
  return jax.tree.map(np.asarray, trainable), history


@pytest.fixture(scope="module")
def coop(tmp_path_factory):
  """CoOp online (the reference) and precomputed (which encodes the stream)."""
  tmp = tmp_path_factory.mktemp("views")
  cfg = _config(tmp)
  env = _env(cfg, _build([cfg], tmp))
  pre_cfg = _config(tmp, views="precomputed")
  online, _ = _train(env, cfg, tmp / "online")
  pre, history = _train(env, pre_cfg, tmp / "precomputed")
  return dict(tmp=tmp, env=env, cfg=pre_cfg, online=online, pre=pre, history=history)


def _assert_close(a, b, rtol=1e-5):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    scale = np.abs(y).max()
    assert np.abs(x - y).max() <= rtol * scale, (np.abs(x - y).max(), scale)


def test_precomputed_coop_equals_online(coop):
  assert coop["env"]["steps"][2] == 4
  init = np.asarray(coop["env"]["method"].init(jax.random.fold_in(jax.random.key(1), 1),
                                               coop["env"]["frozen"])["ctx"])
  assert np.abs(coop["online"]["ctx"] - init).max() > 1e-3  # it trained
  _assert_close(coop["pre"], coop["online"])
  assert len(coop["history"]) == 4 and all(np.isfinite(v) for _, v in coop["history"])


def test_second_run_reads_the_cache(coop, monkeypatch, caplog):
  """A new workdir with the same key: no encoding, the same stream, the same parameters."""
  def no_encoding(*a, **k):
    raise AssertionError("a cache hit must not encode")
  monkeypatch.setattr(view_stream, "encode_stream", no_encoding)
  caplog.set_level(logging.INFO, logger="biomedjax")
  again, _ = _train(coop["env"], coop["cfg"], coop["tmp"] / "again")
  assert "view cache hit stream-" in caplog.text
  jax.tree.map(np.testing.assert_array_equal, again, coop["pre"])
  entries = [p.name for p in (coop["tmp"] / "view_cache").iterdir()]
  assert len(entries) == 1 and entries[0].startswith("stream-")  # no temporary left behind


def test_interrupted_precomputed_run_resumes_to_the_same_parameters(coop, monkeypatch):
  nexts = []
  original = view_stream.StreamIterator.__next__

  def next_then_signal(self):
    nexts.append(self.step)
    if len(nexts) == 2:  # SIGINT during step 2: it finishes, saves and stops
      os.kill(os.getpid(), signal.SIGINT)
    return original(self)
  workdir = coop["tmp"] / "interrupted"
  with monkeypatch.context() as m:
    m.setattr(view_stream.StreamIterator, "__next__", next_then_signal)
    with pytest.raises(lifecycle.Interrupted, match="stopped at step 2 of 4"):
      _train(coop["env"], coop["cfg"], workdir)
  resumed, history = _train(coop["env"], coop["cfg"], workdir)
  jax.tree.map(np.testing.assert_array_equal, resumed, coop["pre"])
  assert history == coop["history"]


def test_key_changes_with_seed_shots_and_schedule(coop):
  env, cfg = coop["env"], coop["cfg"]

  def key(**change):
    c = cfg.copy_and_resolve_references()
    for k, v in change.items():
      section, _, name = k.partition(".")
      if name:
        c[section][name] = v
      else:
        c[section] = v
    return view_stream.digest(view_stream.key_fields(c, env["data"], env["backbone"],
                                                     env["frozen"]["backbone"]))
  base = key()
  assert base == key()
  variants = [key(seed=2), key(**{"data.shots": 8}), key(**{"data.random_flip": True}),
              key(**{"data.image_size": 112}), key(**{"model.compute_dtype": "bfloat16"})]
  assert len({base, *variants}) == 1 + len(variants)


def test_cached_views_are_deterministic_and_follow_the_online_order(coop, caplog):
  env = coop["env"]
  cfg = _config(coop["tmp"], views="cached:3")
  args = (cfg, env["data"], env["backbone"], env["frozen"]["backbone"], env["mesh"], 32, 4)
  first = view_stream.open_stream(*args)
  caplog.set_level(logging.INFO, logger="biomedjax")
  second = view_stream.open_stream(*args)
  assert "view cache hit views3-" in caplog.text
  pre = view_stream.open_stream(coop["cfg"], *args[1:])
  views = np.load(first.path / view_stream.FEATURES_FILE)
  assert views.shape[:2] == (3, 64)
  drawn = set()
  for i in range(4):
    a, b = first.batch(i), second.batch(i)
    np.testing.assert_array_equal(a["features"], b["features"])
    np.testing.assert_array_equal(a["label"], pre.batch(i)["label"])  # the online shuffle
    for f in a["features"]:  # every row is one of the V views of some image
      hits = np.argwhere(np.all(np.isclose(views, f, rtol=0, atol=0), axis=-1))
      assert len(hits) >= 1
      drawn.add(int(hits[0][0]))
  assert drawn == {0, 1, 2}
  trainable, history = _train(env, cfg, coop["tmp"] / "cached")
  assert all(np.isfinite(v) for _, v in history)


def test_views_setting_errors_name_the_method_and_the_fix():
  from types import SimpleNamespace
  import ml_collections
  cfg = ml_collections.ConfigDict(dict(data=dict(views="precomputed", encode_batch=256)))
  pixels = SimpleNamespace(name="finetune", inputs="pixels", trains=True, stages=("train",))
  fit_only = SimpleNamespace(name="linear_probe", inputs="features", trains=False,
                             stages=("fit",))
  with pytest.raises(ValueError, match="'finetune' trains on pixels.*views=online"):
    view_stream.check(cfg, pixels)
  with pytest.raises(ValueError, match="'linear_probe' only fits.*views=online"):
    view_stream.check(cfg, fit_only)
  cfg.data.views = "cached:0"
  with pytest.raises(ValueError, match="config.data.views='cached:0'"):
    view_stream.check(cfg, pixels)
  cfg.data.views = "online"
  assert view_stream.check(cfg, pixels) == "online"
