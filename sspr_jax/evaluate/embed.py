"""Backbone embeddings of a labeled crops dataset, jitted and batched.

Thesis preprocessing (REFERENCE.md): shorter side to `image_size` (256),
center crop `image_size`, the backbone's normalisation (ImageNet mean/std
unless it has its own), global-average-pool feature. Backbones come from
`backbone_names` (a checkpoint, a baseline, ImageNet weights).
"""

import collections
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from sspr_jax.data import augment
from sspr_jax.data import pipeline
from sspr_jax.core import mesh as mesh_lib
from sspr_jax.core import ops
from sspr_jax.evaluate import backbone_names


@functools.lru_cache(maxsize=8)
def _features_fn(module: nn.Module, normalize, mesh):
  """Jitted uint8 images -> float32 features, compiled once per architecture.

  Images and features are split over the mesh's data axis, the variables
  replicated: each device embeds its slice of the batch.
  """
  normalize = normalize or augment.normalize

  def features(variables, images):
    x = normalize(images)
    return module.apply(variables, x, train=False).astype(jnp.float32)

  return jax.jit(
    features,
    in_shardings=(mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)),
    out_shardings=mesh_lib.batch_sharding(mesh),
  )


def _replicate(variables, mesh):
  """Variables replicated over `mesh`. With several processes, arrays local
  to one device (a checkpoint restored per process) go through the host:
  device_put takes a host value as the same on every process."""
  sharding = mesh_lib.replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(variables, sharding)

  def put(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x, sharding)  # Already global.
    return jax.device_put(np.asarray(x), sharding)

  return jax.tree.map(put, variables)


def _local_rows(x: jax.Array) -> list[jax.Array]:
  """This process's row blocks of a batch-sharded array, in batch order."""
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  return [s.data for s in shards]


# Batches dispatched to the device but not yet waited for (`embed`).
IN_FLIGHT = 2


def embed(
  backbone: backbone_names.Backbone,
  source,
  *,
  image_size: int = 256,
  batch_size: int = 64,
  keys=('label', 'origin', 'crop_id'),
  mesh=None,
) -> dict:
  """Features of every example of `source`, in dataset order.

  The batches are split over all devices of `mesh` (default: every device of
  every process); with several processes each reads its own shard of the
  dataset and every process returns all N rows. `batch_size` is per process,
  rounded up to a multiple of its device count. Returns numpy arrays:
  'features' [N, C], 'features_normalized' (L2) and the requested `keys` of
  each example.
  """
  num_examples = len(source)
  if num_examples == 0:
    raise ValueError(
      'Cannot embed an empty dataset '
      f'({getattr(source, "name", type(source).__name__)}).'
    )
  mesh = mesh or mesh_lib.data_mesh()
  local_devices = mesh.local_mesh.size
  batch_size = -(-batch_size // local_devices) * local_devices
  processes, process = jax.process_count(), jax.process_index()
  # Strided shards (pipeline.make_loader): process p reads p, p + P, ...;
  # every process steps as often as the largest shard needs.
  largest_shard = -(-num_examples // processes)
  num_batches = -(-largest_shard // batch_size)
  loader = pipeline.make_loader(
    source,
    batch_size=batch_size,
    image_size=image_size,
    seed=0,
    shuffle=False,
    num_epochs=1,
    drop_remainder=False,
    resize='shorter_center_crop',
    keys=keys,
    shard_index=process,
    shard_count=processes,
  )

  features = _features_fn(backbone.module, backbone.normalize, mesh)
  variables = _replicate(backbone.variables, mesh)
  sharding = mesh_lib.batch_sharding(mesh)
  parts, out, batches = [], {k: [] for k in keys}, iter(loader)
  # The bar counts batches whose features are ready: dispatch runs ahead of
  # the device by at most `IN_FLIGHT` batches (so the device stays busy
  # while the host decodes the next one), and the oldest is waited for
  # before it is counted.
  in_flight = collections.deque()
  bar = tqdm.tqdm(
    total=num_batches,
    desc=f'embed ({backbone.name})',
    unit='batch',
    leave=False,
    disable=process != 0,
    dynamic_ncols=True,
  )
  with bar:
    for _ in range(num_batches):
      # Every process runs every step (one SPMD program), a shard that has
      # run out with an empty batch.
      batch = next(batches, None)
      images = np.zeros((batch_size, image_size, image_size, 3), np.uint8)
      if batch is not None:
        images[: len(batch['image'])] = batch['image']
        for k in keys:
          out[k].append(batch[k])
      global_images = jax.make_array_from_process_local_data(sharding, images)
      # Features stay on device until the loop ends.
      result = features(variables, global_images)
      parts.extend(_local_rows(result))
      in_flight.append(result)
      if len(in_flight) > IN_FLIGHT:
        in_flight.popleft().block_until_ready()
        bar.update(1)
    while in_flight:
      in_flight.popleft().block_until_ready()
      bar.update(1)
  local = {'features': np.concatenate(jax.device_get(parts))}
  local.update({k: np.concatenate(v) for k, v in out.items()})
  shard_size = len(range(process, num_examples, processes))
  result = {k: v[:shard_size] for k, v in local.items()}
  if processes > 1:
    result = _gather_processes(result, num_examples)
  result['features_normalized'] = ops.l2_normalize(result['features'])
  return result


def _gather_processes(local: dict, num_examples: int) -> dict:
  """Every process's strided shard -> all rows in dataset order, everywhere."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  processes = jax.process_count()
  rows = -(-num_examples // processes)

  def allgather(
    x,
  ):  # [rows, ...] per process -> [rows * P, ...] in dataset order
    gathered = np.asarray(multihost_utils.process_allgather(x))
    # [P, rows, ...]: row k of process p is example p + k * P.
    return gathered.swapaxes(0, 1).reshape((rows * processes,) + x.shape[1:])

  result = {}
  for key, value in local.items():
    text = value.dtype.kind == 'S'
    if text:  # Fixed-width bytes travel as uint8 [n, widest in any process].
      width = int(
        allgather(np.full((rows,), value.dtype.itemsize, np.int32)).max()
      )
      value = (
        value.astype(f'S{width}').view(np.uint8).reshape(len(value), width)
      )
    elif value.dtype.kind not in 'biuf':
      raise ValueError(
        f'Cannot gather field {key!r} of dtype {value.dtype} across processes.'
      )
    padded = np.zeros((rows,) + value.shape[1:], value.dtype)
    padded[: len(value)] = value
    gathered = allgather(padded)[:num_examples]
    if text:
      gathered = np.ascontiguousarray(gathered).view(f'S{width}')[:, 0]
    result[key] = gathered
  return result


def save(path: str, embeddings: dict, class_names=None):
  """Writes embeddings (+ class names) as one `.npz`."""
  extra = (
    {} if class_names is None else {'class_names': np.asarray(class_names)}
  )
  np.savez(path, **embeddings, **extra)
