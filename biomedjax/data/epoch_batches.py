"""Per-epoch batches with the last partial batch kept (``config.data.last_batch="keep"``).

The visual-reprogramming reference (BioMedVR/AttrVR ``datasets/build_loader.py``: a torch
``DataLoader(shuffle=True)`` without ``drop_last``) cuts every epoch's fresh shuffle into batches
of B and keeps the remainder: 80 images at B = 64 give a batch of 64, then one of 16, per epoch,
so an epoch is ``ceil(n / B)`` steps and sees every image exactly once.

Stream: seeded per-epoch shuffle -> repeat -> augment (each example's randomness seeded by its
global stream position, as ``pipeline.train_dataset``) -> batch ``i`` of epoch ``e`` = stream
positions ``[e*n + j*B, min(e*n + (j+1)*B, (e+1)*n))`` with ``j = i mod ceil(n/B)``. Process
``p`` of ``P`` holds rows ``p, p+P, ...`` of each global batch, so the global batches are the
same whatever the process count. It is a grain ``MapDataset`` over batch indices, so its
iterator's state (the next batch index) checkpoints and resumes like the default pipeline's.

Devices: a global batch is split over the mesh's 'data' axis, so both B and the remainder
r = n mod B must divide evenly. The engine therefore puts the mesh over the largest device count
dividing gcd(B, r) (``mesh_batch``); on one host that may mean fewer devices than it has (at
16 shots the reference's sets give r in {0, 16, 48}: all 8 of 8 devices stay in use). Padding
the partial batch and masking the loss was the alternative; it was not taken because every
method's loss (and its regularisers, e.g. BioMedVR's confusion hinge, a batch mean) would have
to honour the mask, and a masked mean is not the reference's mean over the smaller batch in
parity tests either. A multi-host run must use every device, so there r must be a multiple of
the device count: the error says which batch sizes work.
"""

from __future__ import annotations

import math

import grain
import numpy as np

LAST_BATCH = ("drop", "keep")


def check_last_batch(value: str, epoch_drop_last: bool = False) -> None:
  if value not in LAST_BATCH:
    raise ValueError(f"config.data.last_batch={value!r}: use one of {LAST_BATCH}")
  if value == "keep" and epoch_drop_last:
    raise ValueError("config.data.last_batch='keep' contradicts config.data.epoch_drop_last=True "
                     "(which drops each epoch's partial batch): set one of them")


def steps_per_epoch(n: int, batch: int, last_batch: str) -> int:
  """``ceil(n / B)`` when the partial batch is kept, else ``max(1, n // B)``."""
  return math.ceil(n / batch) if last_batch == "keep" else max(1, n // batch)


def mesh_batch(n: int, batch: int, last_batch: str) -> int:
  """The batch size every step's global batch is a multiple of: gcd(B, n mod B) when a partial
  batch is kept, else B. The mesh is built over the devices dividing it."""
  r = n % batch
  return math.gcd(batch, r) if last_batch == "keep" and r else batch


def check_devices(n: int, batch: int, last_batch: str, num_devices: int,
                  process_count: int) -> None:
  """Multi-host runs need every global batch, the partial one included, on all devices."""
  r = n % batch
  if last_batch == "keep" and process_count > 1 and r and r % num_devices:
    raise ValueError(
        f"config.data.last_batch='keep': {n} training images at batch {batch} leave a last "
        f"batch of {r}, which the {num_devices} devices of this multi-host run cannot share "
        f"evenly; choose a batch size whose remainder n mod B is a multiple of {num_devices} "
        "(or 0), or last_batch='drop'")


class _GatherBatch:
  """batch index -> this process's rows of that global batch, stacked (picklable for workers)."""

  def __init__(self, stream, n: int, batch: int, process_index: int, process_count: int,
               stack):
    self.stream, self.n, self.batch = stream, n, batch
    self.pi, self.pc, self.stack = process_index, process_count, stack
    self.per_epoch = math.ceil(n / batch)

  def __call__(self, i: int):
    epoch, j = divmod(int(i), self.per_epoch)
    start = epoch * self.n + j * self.batch
    stop = min(start + self.batch, (epoch + 1) * self.n)
    return self.stack([self.stream[k] for k in range(start + self.pi, stop, self.pc)])


def keep_last_batches(stream: grain.MapDataset, n: int, batch: int, process_index: int,
                      process_count: int, stack) -> grain.MapDataset:
  """``stream`` (augmented examples, epoch after epoch of ``n``) -> a MapDataset of this
  process's batches, the partial one of every epoch kept (see the module doc)."""
  if batch % process_count:
    raise ValueError(f"global batch size {batch} must be a multiple of the process count "
                     f"{process_count}")
  r = n % batch
  if r % process_count:
    raise ValueError(f"config.data.last_batch='keep': the last batch of each epoch ({r} of "
                     f"{n} images at batch {batch}) cannot be split over {process_count} "
                     "processes")
  epochs = len(stream) // n
  return grain.MapDataset.range(epochs * math.ceil(n / batch)).map(
      _GatherBatch(stream, n, batch, process_index, process_count, stack))


def epoch_sizes(n: int, batch: int) -> np.ndarray:
  """The global batch sizes of one epoch, in order (for tests and logs)."""
  sizes = np.full(math.ceil(n / batch), batch)
  if n % batch:
    sizes[-1] = n % batch
  return sizes
