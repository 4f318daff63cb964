"""One backbone registry: a config's `model` section -> module and input.

`model.backbone` names a ResNet (`resnet.BACKBONES`; `width` and `stem`
apply) or EfficientNet-Lite0 (`efficientnet_lite0`). Each architecture has
the input normalisation its ImageNet weights were trained with, so the
views of pre-training and the evaluation embedding use the same one.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from sspr_jax.models import efficientnet
from sspr_jax.models import resnet

EFFICIENTNETS = ('efficientnet_lite0',)
NAMES = tuple(sorted(resnet.BACKBONES)) + EFFICIENTNETS
ARCHITECTURE_KEYS = ('backbone', 'width', 'stem')


def architecture(model) -> dict:
  """The keys of a `model` section (or backbone name) that fix the network's
  shape: {'backbone', and 'width' / 'stem' where given}."""
  if isinstance(model, str):
    return {'backbone': model}
  return {k: model[k] for k in ARCHITECTURE_KEYS if k in model}


def _resnet_only(model, name: str) -> None:
  width, stem = model.get('width', 0), model.get('stem', 'imagenet')
  if width or stem != 'imagenet':
    raise ValueError(
      f'model.width={width!r} / model.stem={stem!r} apply to ResNets only; '
      f'{name} has its own (leave them at 0 / imagenet).'
    )


def from_config(
  model,
  *,
  dtype: Any = jnp.float32,
  zero_init_residual: bool = False,
) -> nn.Module:
  """The backbone module of a `model` section (or a backbone name): images
  [B, H, W, 3] -> features [B, C], `__call__(x, train=...)`; parameters are
  float32, computation in `dtype`."""
  model = architecture(model)
  name = model.get('backbone')
  if name in EFFICIENTNETS:
    _resnet_only(model, name)
    return efficientnet.EfficientNetLite(dtype=dtype)
  if name not in resnet.BACKBONES:
    raise ValueError(f'Unknown backbone {name!r}; known: {", ".join(NAMES)}.')
  kwargs = dict(dtype=dtype, param_dtype=jnp.float32)
  if zero_init_residual:
    kwargs['zero_init_residual'] = True
  return resnet.from_config(model, **kwargs)


def normalization(model) -> dict:
  """`augment.normalize`'s mean/std keywords for this architecture's input:
  {} (its default, the ImageNet mean/std) for ResNets."""
  if architecture(model).get('backbone') in EFFICIENTNETS:
    return {
      'mean': efficientnet.PREPROCESS_MEAN,
      'std': efficientnet.PREPROCESS_STD,
    }
  return {}


def match_variables(variables, expected, what: str):
  """`variables` restricted to the tree of `expected` (arrays or
  ShapeDtypeStructs), as float32 numpy: extra entries (an ImageNet
  classifier) are dropped; a missing entry or another shape is a ValueError
  naming it and `what` the variables are."""

  def walk(have, want, path):
    if not isinstance(want, dict):
      shape = tuple(getattr(have, 'shape', ()))
      if isinstance(have, dict) or shape != tuple(want.shape):
        raise ValueError(
          f'{what}: {"/".join(path)} has shape {shape}, the backbone '
          f'needs {tuple(want.shape)}.'
        )
      return np.asarray(have, np.float32)
    out = {}
    for key, value in want.items():
      if not isinstance(have, dict) or key not in have:
        raise ValueError(f'{what} has no {"/".join(path + (key,))}.')
      out[key] = walk(have[key], value, path + (key,))
    return out

  return walk(variables, expected, ())
