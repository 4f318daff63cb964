"""The device mesh: one 'data' axis over every device of every host.

Batches cross from the host here: each process reads its own slice of the
global batch (`per_process_batch`) and `shard_batch` assembles the slices
into global `jax.Array`s split along the data axis.
"""

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def data_mesh() -> Mesh:
  """A 1-D mesh over all devices (all hosts after jax.distributed.initialize)."""
  return jax.make_mesh(
    (jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,)
  )


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


# Leaves with fewer elements stay replicated when the state is sharded:
# gathering them costs more than the memory they would save.
MIN_SHARDED_SIZE = 2**12


def state_sharding(tree: Any, mesh: Mesh, shard: bool = False) -> Any:
  """A `NamedSharding` per leaf of a train state (arrays or shape structs).

  `shard=False`: every leaf replicated. `shard=True` (ZeRO-3 / FSDP style):
  each leaf of at least `MIN_SHARDED_SIZE` elements is split over the data
  axis along its largest dimension that the axis divides; the jitted step
  gathers it where a computation needs it whole. Smaller leaves, scalars
  and leaves with no such dimension stay replicated.
  """
  devices = mesh.shape[DATA_AXIS]
  whole = replicated(mesh)

  def one(leaf):
    shape = tuple(getattr(leaf, 'shape', ()))
    if not shard or devices == 1 or int(np.prod(shape)) < MIN_SHARDED_SIZE:
      return whole
    axes = [i for i, d in enumerate(shape) if d % devices == 0]
    if not axes:
      return whole
    axis = max(axes, key=lambda i: (shape[i], -i))
    spec = [None] * len(shape)
    spec[axis] = DATA_AXIS
    return NamedSharding(mesh, P(*spec))

  return jax.tree.map(one, tree)


def per_process_batch(global_batch: int) -> int:
  """This process's share of `global_batch`, which must split over devices.

  Raises:
    ValueError: naming `config.batch_size` when the devices of all processes
      cannot take equal parts.
  """
  devices = jax.device_count()
  if global_batch < 1 or global_batch % devices:
    raise ValueError(
      f'config.batch_size={global_batch}: not divisible by the {devices} '
      'devices (jax.device_count()); the global batch is split evenly over '
      f'them: use a multiple of {devices}.'
    )
  return global_batch // jax.process_count()


def shard_batch(
  batch: Mapping[str, Any], mesh: Mesh, axis: str = DATA_AXIS
) -> dict[str, jax.Array]:
  """Per-process numpy batch -> global `jax.Array`s sharded along `axis`.

  Only numeric and boolean arrays are transferred; text (bytes/object) fields
  stay on the host and are left out of the result. The global batch is the
  concatenation of all processes' batches.
  """
  if axis not in mesh.shape:
    raise ValueError(f'Mesh has no axis {axis!r}; axes: {tuple(mesh.shape)}.')
  sharding = NamedSharding(mesh, P(axis))
  out = {}
  for key, value in batch.items():
    array = np.asarray(value)
    if array.dtype.kind not in 'biuf':
      continue
    try:
      out[key] = jax.make_array_from_process_local_data(sharding, array)
    except ValueError as e:
      raise ValueError(
        f'Batch field {key!r} with per-process shape {array.shape} cannot '
        f'be split along mesh axis {axis!r} ({mesh.shape[axis]} devices): '
        f'{e}'
      ) from e
  return out
