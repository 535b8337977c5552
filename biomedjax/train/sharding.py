"""The device mesh and the two placements the engine uses: replicated params, sharded batches.

Data parallel only: BiomedCLIP (196M parameters) fits every accelerator, so parameters, the
trainable pytree and the optimizer state are replicated and the batch is split over ``'data'``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(global_batch_size: int, devices=None) -> Mesh:
  """A 1-D ``('data',)`` mesh over as many devices as evenly divide the global batch.

  Few-shot batches can be tiny (4 images for 1-shot BTMRI): on one host the mesh then uses
  fewer devices rather than failing. Across hosts every device must take part.
  """
  devices = list(devices if devices is not None else jax.devices())
  n = max(d for d in range(1, len(devices) + 1)
          if len(devices) % d == 0 and global_batch_size % d == 0)
  if n < len(devices) and jax.process_count() > 1:
    raise ValueError(f"global batch size {global_batch_size} must be a multiple of the "
                     f"{len(devices)} devices of a multi-host run")
  return Mesh(np.asarray(devices[:n]), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicate(tree, mesh: Mesh):
  """Places a host pytree on every device of the mesh (same value everywhere)."""
  return jax.device_put(tree, replicated(mesh))
