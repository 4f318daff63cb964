"""Heads that sit on the pooled backbone feature during pre-training.

Choices follow the thesis' VISSL configs (REFERENCE.md):

* RotNet: one linear layer, 2048 -> 4.
* MoCo v2 and SimCLR: ``ProjectionHead`` Linear(2048) -> ReLU -> Linear(128),
  no BatchNorm. This is MoCo v2's head and VISSL's ``simclr_8node_resnet``
  head (``mlp`` layers default to ``use_bn=False``). The SimCLR paper's
  Linear-BN-ReLU-Linear(-BN) variant (VISSL ``*_bnHead`` configs) is
  available with ``use_bn=True``.
* Jigsaw: a shared per-tile Linear(1000) -> BN -> ReLU, the 9 tile outputs
  concatenated, then Linear(num_permutations) (VISSL ``siamese_concat_view``).

Linear layers use Flax's default init (LeCun normal weights, zero biases),
not torch's uniform; BatchNorm uses torch's momentum 0.1 / eps 1e-5.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


class LinearHead(nn.Module):
  """A single dense layer, e.g. the RotNet rotation classifier (-> 4)."""

  num_outputs: int = 4
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train  # uniform signature with the other heads
    return nn.Dense(
      self.num_outputs,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name='fc',
    )(x)


class ProjectionHead(nn.Module):
  """MLP projection head: (Dense -> [BN] -> ReLU) per hidden size -> Dense.

  Defaults give MoCo v2 / SimCLR's 2048 -> 2048 -> 128. With ``use_bn`` a BN
  follows every hidden Dense, and also the output one if ``bn_on_output``
  (SimCLR v1's TF head).
  """

  hidden_dims: Sequence[int] = (2048,)
  out_dim: int = 128
  use_bn: bool = False
  bn_on_output: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    for i, dim in enumerate(self.hidden_dims):
      x = nn.Dense(
        dim, dtype=self.dtype, param_dtype=self.param_dtype, name=f'fc{i}'
      )(x)
      if self.use_bn:
        x = _batch_norm(self, train, f'bn{i}')(x)
      x = nn.relu(x)
    x = nn.Dense(
      self.out_dim,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=f'fc{len(self.hidden_dims)}',
    )(x)
    if self.use_bn and self.bn_on_output:
      x = _batch_norm(self, train, f'bn{len(self.hidden_dims)}')(x)
    return x


class JigsawHead(nn.Module):
  """Per-tile Dense -> BN -> ReLU, concat over tiles, Dense to permutations.

  Input: tile features [B, T, D] (T = 9 tiles); output logits
  [B, num_permutations]. BN statistics pool over all B * T tiles, as VISSL's
  head sees the tiles as one batch.
  """

  num_permutations: int = 2000
  tile_dim: int = 1000
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tile_features, train: bool = True):
    batch, num_tiles, dim = tile_features.shape
    x = tile_features.reshape(batch * num_tiles, dim)
    x = nn.Dense(
      self.tile_dim,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name='tile_fc',
    )(x)
    x = nn.relu(_batch_norm(self, train, 'tile_bn')(x))
    x = x.reshape(batch, num_tiles * self.tile_dim)
    return nn.Dense(
      self.num_permutations,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name='fc',
    )(x)


def _batch_norm(module, train: bool, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    dtype=module.dtype,
    param_dtype=module.param_dtype,
    name=name,
  )
