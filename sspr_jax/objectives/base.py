"""What every objective gives the trainer: init, views, loss (see trainer.py).

An objective owns one `Network` (backbone + head). Its parameters live under
`params['backbone']` / `params['head']`, so a backbone is restored from any
checkpoint with Orbax alone as `state['params']['backbone']` and
`state['batch_stats']['backbone']`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sspr_jax.data import augment
from sspr_jax.models import backbones
from sspr_jax.objectives import common
from sspr_jax.objectives import monitor

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class Network(nn.Module):
  """Backbone on images [..., H, W, 3] -> (features [..., C], head output)."""

  backbone: nn.Module
  head: nn.Module

  @nn.compact
  def __call__(self, x, train: bool = True):
    lead = x.shape[:-3]  # (B,) or (B, tiles)
    features = self.backbone(x.reshape((-1,) + x.shape[-3:]), train=train)
    features = features.reshape(lead + features.shape[-1:])
    return features, self.head(features, train=train)


def compute_dtype(config: ml_collections.ConfigDict):
  name = config.model.get('dtype', 'float32')
  if name not in DTYPES:
    raise ValueError(
      f'Unknown config.model.dtype {name!r}; valid: {", ".join(DTYPES)}.'
    )
  return DTYPES[name]


def make_backbone(config: ml_collections.ConfigDict) -> nn.Module:
  """The backbone of `config.model`, fp32 parameters, compute in its dtype."""
  try:
    return backbones.from_config(
      config.model,
      zero_init_residual=config.model.get('zero_init_residual', False),
      dtype=compute_dtype(config),
    )
  except ValueError as e:
    raise ValueError(f'config.model: {e}') from None


class Objective:
  """Shared plumbing; subclasses define `make_head`, `views` and `loss`."""

  name = ''

  def __init__(self, config: ml_collections.ConfigDict):
    if self.name not in config:
      raise ValueError(
        f'The config has no `{self.name}` section with the '
        f'{self.name} settings.'
      )
    self.config = config
    self.settings = config[self.name]
    self.dtype = compute_dtype(config)
    # uint8 views -> the backbone's input (its ImageNet weights' statistics).
    self.normalize = functools.partial(
      augment.normalize, **backbones.normalization(config.model)
    )
    self.network = Network(
      backbone=make_backbone(config), head=self.make_head()
    )

  def make_head(self) -> nn.Module:
    raise NotImplementedError

  def network_input(self, views) -> jax.Array:
    """The array of `views` the network is initialised on."""
    return views['images']

  def init(self, rng: jax.Array, batch_spec: dict, backbone=None):
    """(params, batch_stats, extra) for batches shaped like `batch_spec`.

    `batch_spec` maps the batch's keys to `jax.ShapeDtypeStruct`s (or
    arrays): only the shapes of the views are needed, found with
    `jax.eval_shape`, so no data is read to initialise. `backbone`, the
    {'params', 'batch_stats'} of a trained backbone of this architecture
    (`config.model.init_from`), replaces the random backbone; the head and
    `extra` (e.g. MoCo's key encoder, a copy) are made from it.
    """
    view_rng, init_rng, extra_rng = jax.random.split(rng, 3)
    x = jax.eval_shape(
      lambda b: self.network_input(self.views(view_rng, b)), batch_spec
    )
    variables = self.network.init(
      init_rng, jnp.zeros(x.shape, x.dtype), train=True
    )
    params = variables['params']
    batch_stats = variables.get('batch_stats', {})
    if backbone is not None:
      params = dict(params, backbone=backbone['params'])
      batch_stats = dict(batch_stats, backbone=backbone['batch_stats'])
    return params, batch_stats, self.init_extra(extra_rng, params, batch_stats)

  def backbone_shapes(self, batch_spec: dict) -> dict:
    """{'params', 'batch_stats'} of the backbone as `jax.ShapeDtypeStruct`s."""
    params, batch_stats, _ = jax.eval_shape(
      lambda: self.init(jax.random.key(0), batch_spec)
    )
    return {
      'params': params['backbone'],
      'batch_stats': batch_stats.get('backbone', {}),
    }

  def init_extra(self, rng, params, batch_stats) -> Any:
    del rng, params, batch_stats
    return {}

  def apply(self, params, batch_stats, x, train: bool = True):
    """(features, head output, new batch_stats); outputs in float32."""
    (features, out), updates = self.network.apply(
      {'params': params, 'batch_stats': batch_stats},
      x,
      train=train,
      mutable=['batch_stats'],
    )
    cast = lambda a: a.astype(jnp.float32)
    return cast(features), cast(out), updates['batch_stats']

  def views(self, rng: jax.Array, batch: dict) -> dict:
    """The network's inputs (and targets) from a uint8 batch, on device.

    `batch['image']` is uint8 [B, S, S, 3]; `batch['size']` (int32 [B, 2],
    optional) is each image's valid height and width in its canvas.
    """
    raise NotImplementedError

  def loss(self, params, batch_stats, extra, views, rng):
    raise NotImplementedError

  @staticmethod
  def spread(features: jax.Array) -> jax.Array:
    """Collapse monitor of the backbone features (1 spread, 0 collapsed)."""
    return monitor.embedding_spread(features.reshape(-1, features.shape[-1]))


class Classification(Objective):
  """A pretext classification task: head logits against `views['labels']`."""

  def loss(self, params, batch_stats, extra, views, rng):
    del rng
    features, logits, batch_stats = self.apply(
      params, batch_stats, views['images']
    )
    loss, metrics = common.classification_loss(logits, views['labels'])
    metrics['spread'] = self.spread(features)
    return loss, (metrics, batch_stats, extra)


def contrastive_views(
  settings, rng: jax.Array, batch: dict, normalize=augment.normalize
) -> dict:
  """Two MoCo v2 / SimCLR views of each image, stacked as [B, 2, S, S, 3].

  Stacking on axis 1 keeps both views of an image on its own device when
  the batch is sharded.
  """
  kw = dict(
    size=settings.view_size,
    crop_scale=tuple(settings.crop_scale),
    color_strength=settings.color_strength,
    # Configs written before the field existed keep the papers' 0.2.
    grayscale_p=settings.get('grayscale_p', 0.2),
    blur_p=settings.blur_p,
    valid_size=batch.get('size'),
    normalise=False,
  )
  k1, k2 = jax.random.split(rng)
  images = batch['image']
  return {
    'images': jnp.stack(
      [
        normalize(augment.contrastive_view(k1, images, **kw)),
        normalize(augment.contrastive_view(k2, images, **kw)),
      ],
      axis=1,
    )
  }
