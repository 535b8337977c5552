"""Training-view streams: the frozen image tower's features of the training batches, encoded once.

A method with ``inputs="features"`` trains on the frozen tower's features of augmented images.
Online (``data.views="online"``, the default) the jitted step runs the tower on every augmented
batch. The tower depends on none of the method's hyperparameters, so its outputs can be computed
once and shared:

* ``"precomputed"``: the engine enumerates exactly the uint8 batches the online iterator would
  yield over the whole schedule (``pipeline.train_dataset``: same seed, same shuffles, same
  crops and flips, same order), encodes them in large batches of ``data.encode_batch`` images
  (streaming: one such chunk of images is held at a time), stores the features
  (total_steps, B, D) float32 and the labels (total_steps, B) in a content-addressed cache
  directory, and trains from them: the same arithmetic as online, so the same result (up to the
  float summation order of a different encode batch). Step ``i`` reads row ``i``, so a resumed run
  continues at its restored step.
* ``"cached:V"``: V augmented passes over the training set (``views.encode_views`` with the
  training transform), encoded once; each step takes the online run's shuffled batch of images
  and, for each image, one of its V views drawn from a generator seeded by (seed, step). An
  APPROXIMATION of the protocol (the reference draws a fresh crop for every image of every
  step; here an image repeats one of V crops), in the spirit of Tip-Adapter's augmented cache.
  Never the default; its results are not the reference's.

The cache lives under ``data.view_cache``, or ``$BIOMEDJAX_VIEW_CACHE``, or
``$XDG_CACHE_HOME/biomedjax/views`` (``~/.cache/biomedjax/views``): one directory per key,
shared by every run (and every sweep point) with the same key. The key hashes what decides the
features: the backbone (the converted directory's ``manifest.json`` sha256, which holds the
source checkpoint's hash; for random weights the preset, its architecture and init seed), the
architecture, ``model.compute_dtype``, JAX's default matmul precision, the split file's sha256,
shots, seed and split seed, a digest of the training examples' bytes and labels in source order,
the transform (image size, flip, epoch drop-last) and the schedule (batch size, total steps).
A cache is written into a temporary directory and renamed into place when complete, so an
interrupted encode never leaves a half cache; a finished one is only ever read. In a
multi-process run every process encodes (or reads) the single-process stream on its own devices,
without collectives, and feeds its rows of each global batch; the first complete cache renamed
into a shared cache directory wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import pathlib
import shutil
import time

import grain
import jax
import numpy as np

from biomedjax.tools import provenance
from biomedjax.data import pipeline, transforms, views
from biomedjax.train import file_digests

log = logging.getLogger("biomedjax")

ONLINE, PRECOMPUTED, CACHED = "online", "precomputed", "cached"
# Bump when the augmentation or the stream layout changes: old caches then miss.
STREAM_VERSION = 1
FEATURES_FILE, LABELS_FILE, META_FILE = "features.npy", "labels.npy", "meta.json"


def parse_views(value: str) -> tuple[str, int]:
  """``data.views`` -> (mode, V): ("online", 0), ("precomputed", 0) or ("cached", V >= 1)."""
  if value in (ONLINE, PRECOMPUTED):
    return value, 0
  if value.startswith(CACHED + ":"):
    v = value.partition(":")[2]
    if v.isdigit() and int(v) >= 1:
      return CACHED, int(v)
  raise ValueError(f"config.data.views={value!r}: use 'online', 'precomputed' or 'cached:V' "
                   "(V >= 1 augmented views per training image)")


def check(config, method, drifting: bool = False) -> str:
  """The mode of ``config.data.views``; a clear error where it does not apply to ``method``.

  ``drifting``: the frozen tower runs in train mode (``biomedjax/train/tower.py``), so its
  features of a batch are not a function of the images alone and nothing can be encoded ahead:
  online (``prepare`` logs that once)."""
  value = config.data.get("views", ONLINE)
  mode, _ = parse_views(value)
  if mode == ONLINE or drifting:
    return ONLINE
  if method.inputs != "features":
    raise ValueError(f"config.data.views={value!r}: method {method.name!r} trains on pixels "
                     "(inputs='pixels'), so there are no frozen features to precompute; use "
                     "--config.data.views=online")
  if not method.trains:
    raise ValueError(f"config.data.views={value!r}: method {method.name!r} only fits (stages "
                     f"{method.stages}), it takes no gradient steps to stream views to; use "
                     "--config.data.views=online (its fit_views setting decides its views)")
  unreplayed = {k: config.data.get(k) for k, plain in (("train_resize_first", False),
                                                        ("last_batch", "drop"))
                if config.data.get(k, plain) != plain}
  if unreplayed:  # the encoded stream would not be the online one
    raise ValueError(f"config.data.views={value!r} does not replay {unreplayed} (fixed-size "
                     "batches of the plain crop only); use --config.data.views=online")
  if config.data.get("encode_batch", 256) < 1:
    raise ValueError(f"config.data.encode_batch={config.data.encode_batch}: must be >= 1")
  return mode


def cache_root(data_cfg) -> pathlib.Path:
  """``data.view_cache``, else ``$BIOMEDJAX_VIEW_CACHE``, else the user's cache directory."""
  if data_cfg.get("view_cache", ""):
    return pathlib.Path(data_cfg.view_cache).expanduser()
  if os.environ.get("BIOMEDJAX_VIEW_CACHE"):
    return pathlib.Path(os.environ["BIOMEDJAX_VIEW_CACHE"]).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "biomedjax" / "views"


# -- the cache key ---------------------------------------------------------------------------

def backbone_identity(model_cfg, backbone, params) -> dict:
  """What identifies the image tower's weights (see the module docstring)."""
  ident = {"arch": json.loads(backbone.cfg.to_json()), "compute_dtype": model_cfg.compute_dtype}
  prov = provenance.backbone(model_cfg)
  if prov["kind"] == "random":
    ident.update(kind="random", preset=model_cfg.preset, init_seed=0)  # setup.build_backbone
  elif prov["manifest_sha256"]:
    ident.update(kind="converted", manifest_sha256=prov["manifest_sha256"])
  else:  # a converted directory without manifest: hash the weights themselves
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
      h.update(np.asarray(leaf).tobytes())
    ident.update(kind="converted", params_sha256=h.hexdigest())
  return ident


def source_digest(source) -> str:
  """sha256 over every training example's label and image bytes, in source order."""
  h = hashlib.sha256()
  for i in range(len(source)):
    record = source[i]
    h.update(np.asarray(record["label"]).tobytes())
    h.update(hashlib.sha256(record["image"]).digest())
  return h.hexdigest()


def key_fields(config, data, backbone, params) -> dict:
  """The stream-independent part of a cache key (backbone, data, transform)."""
  d = config.data
  split = pathlib.Path(data.split_file) if data.split_file else None
  return {
      "version": STREAM_VERSION,
      "backbone": backbone_identity(config.model, backbone, params),
      "matmul_precision": str(jax.config.jax_default_matmul_precision),
      "split_file_sha256": provenance.sha256(split) if split and split.is_file() else None,
      "shots": d.shots, "seed": config.seed, "split_seed": d.get("split_seed", 0) or config.seed,
      "train_examples": len(data.splits["train"]),
      "train_digest": source_digest(data.splits["train"]),
      "image_size": d.image_size, "random_flip": bool(d.get("random_flip", False)),
      "epoch_drop_last": bool(d.get("epoch_drop_last", False)),
      "transform": f"{transforms.TrainTransform.__module__}.TrainTransform",
  }


def digest(fields: dict) -> str:
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


# -- encoding --------------------------------------------------------------------------------

def make_encoder(backbone, backbone_params, mesh, encode_batch: int):
  """-> (chunk, encode): ``encode(uint8 (n <= chunk, S, S, 3)) -> float32 (n, D)`` numpy.

  Runs on this process's devices of ``mesh`` only, with no collectives: every process of a
  multi-process run can build (or read) the cache on its own, whatever the others do. The chunk
  is ``encode_batch`` rounded up to a multiple of those devices, padded to one shape (one
  compilation) and sharded over them.
  """
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  devices = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
  local = Mesh(np.asarray(devices), ("data",))
  chunk = math.ceil(encode_batch / len(devices)) * len(devices)
  params = jax.device_put(jax.tree.map(lambda x: x.addressable_data(0), backbone_params),
                          NamedSharding(local, P()))
  rows = NamedSharding(local, P("data"))
  fn = jax.jit(backbone.image_features)

  def encode(images: np.ndarray) -> np.ndarray:
    n = len(images)
    if n < chunk:
      images = np.concatenate([images, np.repeat(images[-1:], chunk - n, 0)])
    return np.asarray(fn(params, jax.device_put(images, rows)), np.float32)[:n]
  return chunk, encode


def _publish(tmp: pathlib.Path, final: pathlib.Path) -> None:
  """Renames a complete cache into place; another process that got there first wins."""
  try:
    os.rename(tmp, final)
  except OSError:
    if not (final / META_FILE).is_file():
      raise
    shutil.rmtree(tmp, ignore_errors=True)


def encode_stream(source, encode, chunk: int, out_dir: pathlib.Path, *, batch: int, total: int,
                  seed: int, image_size: int, random_flip: bool, epoch_drop_last: bool,
                  reading: dict | None = None) -> None:
  """The online stream's first ``total`` batches (single-process order), encoded chunk by chunk
  into ``out_dir/features.npy`` (total, batch, D) and ``labels.npy``. ``reading``:
  ``pipeline.reading`` of the run's config (default: in-process, the default read-ahead)."""
  ds = pipeline.train_dataset(source, global_batch_size=batch, seed=seed, image_size=image_size,
                              process_index=0, process_count=1, epoch_drop_last=epoch_drop_last,
                              random_flip=random_flip, **(reading or {}))
  it = iter(ds)
  feats = labels = None
  pending, rows, written = [], 0, 0

  def write(images):
    nonlocal feats, written
    out = encode(images)
    if feats is None:
      feats = np.lib.format.open_memmap(out_dir / FEATURES_FILE, "w+", np.float32,
                                        (total * batch, out.shape[1]))
    feats[written:written + len(out)] = out
    written += len(out)

  try:
    for step in range(total):
      b = next(it)
      if labels is None:
        labels = np.empty((total, *b["label"].shape), b["label"].dtype)
      labels[step] = b["label"]
      pending.append(b["image"])
      rows += len(b["image"])
      if rows >= chunk:
        images = np.concatenate(pending)
        full = len(images) // chunk * chunk
        for s in range(0, full, chunk):
          write(images[s:s + chunk])
        pending, rows = ([images[full:]] if full < len(images) else []), len(images) - full
    if rows:
      write(np.concatenate(pending))
  finally:
    getattr(it, "close", lambda: None)()
  feats.flush()
  del feats
  np.save(out_dir / LABELS_FILE, labels)


class FeatureStream:
  """A view stream: ``batch(step) -> {"features" (B, D), "label", "mask"}`` host NumPy rows of
  the GLOBAL batch ``step``, plus the cache ``key`` and ``path`` it came from."""

  def __init__(self, key: str, path: pathlib.Path, batch_fn, total: int):
    self.key, self.path, self.total = key, path, total
    self._batch_fn = batch_fn

  def batch(self, step: int) -> dict:
    if not 0 <= step < self.total:
      raise IndexError(f"step {step} outside the stream's {self.total} steps ({self.path})")
    return self._batch_fn(step)


def precomputed_stream(config, data, backbone, backbone_params, mesh, batch: int, total: int
                       ) -> FeatureStream:
  """The precomputed stream of this run's schedule: read from the cache, or encoded into it."""
  fields = {**key_fields(config, data, backbone, backbone_params), "mode": PRECOMPUTED,
            "batch": batch, "total_steps": total}
  key = "stream-" + digest(fields)

  def build(out):
    chunk, encode = make_encoder(backbone, backbone_params, mesh,
                                 config.data.get("encode_batch", 256))
    encode_stream(data.splits["train"], encode, chunk, out, batch=batch, total=total,
                  seed=config.seed, image_size=config.data.image_size,
                  random_flip=fields["random_flip"], epoch_drop_last=fields["epoch_drop_last"],
                  reading=pipeline.reading(config.data))

  path = _cached(config, key, fields, build)
  feats = np.load(path / FEATURES_FILE, mmap_mode="r")
  labels = np.load(path / LABELS_FILE)
  feats = feats.reshape(total, batch, feats.shape[-1])
  mask = np.ones((batch,), bool)
  return FeatureStream(key, path, lambda i: {"features": np.asarray(feats[i]),
                                             "label": labels[i], "mask": mask}, total)


def shuffled_indices(n: int, batch: int, seed: int, epoch_drop_last: bool) -> grain.MapDataset:
  """The example indices of the online stream, position by position (``train_dataset``'s
  shuffle, repeat and drop-last without the decoding)."""
  ds = grain.MapDataset.range(n).seed(seed).shuffle().repeat(None)
  if epoch_drop_last:
    ds = pipeline._drop_last_per_epoch(ds, n, batch, seed)  # pylint: disable=protected-access
  return ds


def cached_views_stream(config, data, backbone, backbone_params, mesh, batch: int, total: int,
                        num_views: int) -> FeatureStream:
  """``cached:V``: V encoded passes, one view drawn per image per step (an approximation)."""
  fields = {**key_fields(config, data, backbone, backbone_params), "mode": CACHED,
            "views": num_views}
  key = f"views{num_views}-" + digest(fields)
  source = data.splits["train"]
  transform = transforms.TrainTransform(config.data.image_size, fields["random_flip"])

  def build(out):
    chunk, encode = make_encoder(backbone, backbone_params, mesh,
                                 config.data.get("encode_batch", 256))
    feats, labels = views.encode_views(source, encode, num_views, config.seed, chunk,
                                       config.data.image_size, transform=transform)
    np.save(out / FEATURES_FILE, feats)
    np.save(out / LABELS_FILE, labels)

  path = _cached(config, key, fields, build)
  feats = np.load(path / FEATURES_FILE, mmap_mode="r")  # (V, n, D)
  labels = np.load(path / LABELS_FILE)
  order = shuffled_indices(len(source), batch, config.seed, fields["epoch_drop_last"])
  mask = np.ones((batch,), bool)

  def batch_at(i):
    idx = np.asarray([order[i * batch + j] for j in range(batch)])
    view = np.random.default_rng([config.seed, 7919, i]).integers(0, num_views, size=batch)
    return {"features": np.asarray(feats[view, idx]), "label": labels[idx], "mask": mask}
  return FeatureStream(key, path, batch_at, total)


def _cached(config, key: str, fields: dict, build) -> pathlib.Path:
  """``<cache root>/<key>``: read when complete, else built by ``build(tmp dir)`` and renamed."""
  root = cache_root(config.data)
  final = root / key
  if (final / META_FILE).is_file():
    damage = _damage(final)
    if damage is None:
      log.info("view cache hit %s (%s)", key, final)
      return final
    log.warning("view cache entry %s is damaged (%s): encoding it again", final, damage)
    damaged = root / f".{key}.damaged-{os.getpid()}-{time.time_ns()}"
    with contextlib.suppress(FileNotFoundError):  # another process may have moved it already
      os.rename(final, damaged)
    shutil.rmtree(damaged, ignore_errors=True)  # a cache: what it held is encoded again
  root.mkdir(parents=True, exist_ok=True)
  tmp = root / f".{key}.tmp-{os.getpid()}-{time.time_ns()}"
  tmp.mkdir()
  t0 = time.time()
  log.info("view cache miss %s: encoding into %s", key, final)
  try:
    build(tmp)
    meta = {"key": key, "fields": fields, "platform": jax.default_backend(),
            "versions": provenance.versions(), "encode_seconds": round(time.time() - t0, 3),
            "files": file_digests.digests(tmp)}  # checked on every read (``_damage``)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    _publish(tmp, final)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  log.info("view cache %s written in %.1f s", key, time.time() - t0)
  return final


def _damage(entry: pathlib.Path) -> str | None:
  """Why a published cache entry cannot be trusted, or None (entries written before digests
  were recorded get their files' presence and the arrays' headers checked)."""
  try:
    recorded = json.loads((entry / META_FILE).read_text()).get("files")
  except (OSError, ValueError) as e:
    return f"{META_FILE}: {e}"
  if recorded is not None:
    return file_digests.damage(entry, recorded)
  for name in (FEATURES_FILE, LABELS_FILE):
    try:
      np.load(entry / name, mmap_mode="r")
    except (OSError, ValueError) as e:
      return f"{name}: {e}"
  return None


def open_stream(config, data, backbone, backbone_params, mesh, batch: int, total: int
                ) -> FeatureStream | None:
  """The configured stream for a run of ``total`` steps at global ``batch``; None online.

  What packed sweeps call once for all the points that share a stream."""
  mode, num_views = parse_views(config.data.get("views", ONLINE))
  if mode == ONLINE:
    return None
  if mode == PRECOMPUTED:
    return precomputed_stream(config, data, backbone, backbone_params, mesh, batch, total)
  return cached_views_stream(config, data, backbone, backbone_params, mesh, batch, total,
                             num_views)


class StreamIterator:
  """A ``FeatureStream`` as the training loop's iterator of global, data-sharded batches.

  Checkpointable like grain's iterators (``get_state`` / ``set_state``, read by grain's orbax
  handler): the state is the next step. Process p feeds rows p, p + n, ... of each global batch,
  where the online multi-process iterator places them.
  """

  def __init__(self, stream: FeatureStream, mesh, start: int = 0):
    self.stream, self.mesh, self.step = stream, mesh, start

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    b = self.stream.batch(self.step)
    pi, pc = jax.process_index(), jax.process_count()
    self.step += 1
    return pipeline.to_global({k: v[pi::pc] for k, v in b.items()}, self.mesh)

  def get_state(self) -> bytes:
    return json.dumps({"step": self.step, "key": self.stream.key}).encode()

  def set_state(self, state: bytes) -> None:
    s = json.loads(state)
    if s.get("key") != self.stream.key:
      raise ValueError(f"the checkpoint's view stream {s.get('key')} is not this run's "
                       f"{self.stream.key}")
    self.step = int(s["step"])

  def start_prefetch(self) -> None:
    pass


def train_iterator(config, method, backbone_params, data, mesh, steps, online,
                   drifting: bool = False):
  """The training loop's iterator: ``online`` (the grain iterator) unless ``data.views`` asks
  for a precomputed or cached stream (and the tower is not ``drifting``, see ``check``).
  ``steps``: (global batch, steps per epoch, total)."""
  mode = check(config, method, drifting)
  if mode == ONLINE:
    return online
  batch, _, total = steps
  return StreamIterator(open_stream(config, data, method.backbone, backbone_params, mesh, batch,
                                    total), mesh)
