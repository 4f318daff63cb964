"""The device mesh: one 'data' axis over every device of every host."""

import jax
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


def check_global_batch(global_batch: int, mesh: Mesh) -> int:
  """Returns the per-process batch; the global batch must split evenly."""
  n = mesh.devices.size
  if global_batch % n:
    raise ValueError(
      f'config.batch_size={global_batch} is not divisible by the '
      f'{n} devices of the mesh.'
    )
  return global_batch // jax.process_count()
