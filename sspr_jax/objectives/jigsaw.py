"""Jigsaw puzzles (Noroozi & Favaro 2016): predict which permutation of the
3x3 tiles was applied, out of a fixed set of maximal-Hamming permutations
(`permutations.maximal_hamming_permutations`; thesis: 2000 classes).
"""

import jax
import jax.numpy as jnp

from sspr_jax.data import augment
from sspr_jax.models import heads
from sspr_jax.objectives import base
from sspr_jax.objectives.permutations import maximal_hamming_permutations

__all__ = ['Jigsaw', 'maximal_hamming_permutations', 'shuffle_tiles']


def shuffle_tiles(
  tiles: jax.Array, permutations: jax.Array, rng: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """Shuffles each puzzle's tiles by a uniformly drawn permutation class.

  Args:
    tiles: [B, T, ...] the T tiles of each image in reading order.
    permutations: int [N, T], row c = permutation of class c.
    rng: PRNG key.

  Returns:
    (shuffled [B, T, ...], labels [B] int32) with
    shuffled[b, t] = tiles[b, permutations[labels[b], t]], the convention of
    the original code (position t shows tile permutation[t]).
  """
  num_classes, num_tiles = permutations.shape
  if tiles.shape[1] != num_tiles:
    raise ValueError(
      f'tiles has {tiles.shape[1]} tiles, permutations {num_tiles}.'
    )
  labels = jax.random.randint(rng, (tiles.shape[0],), 0, num_classes, jnp.int32)
  order = jnp.asarray(permutations)[labels]  # [B, T]
  order = order.reshape(order.shape + (1,) * (tiles.ndim - 2))
  return jnp.take_along_axis(tiles, order, axis=1), labels


class Jigsaw(base.Classification):
  """Views: random crop, h-flip, random grayscale, 3x3 jittered tiles, shuffled.

  The thesis's transforms on the crop resized to shorter side 256 on the host
  (`input.shorter_side`, aspect kept): RandomCrop(`crop_size` = 255) inside
  the crop, flip (it commutes with the crop in distribution), grayscale
  p=0.66, 85 px cells with 64 px tiles at up to 21 px jitter.
  """

  name = 'jigsaw'

  def __init__(self, config):
    super().__init__(config)
    self.permutations = maximal_hamming_permutations(
      self.settings.num_permutations,
      9,
      self.settings.get('permutation_seed', 0),
    )

  def make_head(self):
    return heads.JigsawHead(
      self.settings.num_permutations,
      self.settings.get('tile_dim', 1000),
      dtype=self.dtype,
    )

  def views(self, rng, batch):
    s = self.settings
    k_crop, k_flip, k_gray, k_tiles, k_perm = jax.random.split(rng, 5)
    images = batch['image']
    x = augment.random_crop(
      k_crop,
      images,
      s.get('crop_size', min(images.shape[1:3])),
      valid_size=batch.get('size'),
    )
    x = augment.horizontal_flip(k_flip, x)
    x = augment.random_grayscale(k_gray, x, s.grayscale_p)
    identity = jnp.broadcast_to(jnp.arange(9), (x.shape[0], 9))
    tiles = augment.jigsaw_tiles(k_tiles, x, identity, 3, s.jitter)
    tiles, labels = shuffle_tiles(
      self.normalize(tiles), jnp.asarray(self.permutations), k_perm
    )
    return {'images': tiles, 'labels': labels}
