import jax
import numpy as np
import pytest

from sspr_jax.objectives import jigsaw


def test_shuffle_tiles_applies_labelled_permutation():
  perms = jigsaw.maximal_hamming_permutations(10, num_tiles=9, seed=0)
  rng = np.random.default_rng(0)
  tiles = rng.normal(size=(6, 9, 3, 3, 2)).astype(np.float32)
  shuffled, labels = jax.jit(jigsaw.shuffle_tiles)(
    tiles, perms, jax.random.key(1)
  )
  assert shuffled.shape == tiles.shape and labels.shape == (6,)
  assert labels.min() >= 0 and labels.max() < 10
  for b in range(6):
    for t in range(9):
      np.testing.assert_array_equal(
        shuffled[b, t], tiles[b, perms[labels[b], t]]
      )


def test_shuffle_tiles_labels_vary_with_rng():
  perms = jigsaw.maximal_hamming_permutations(100, seed=0)
  tiles = np.zeros((64, 9, 1), np.float32)
  _, a = jigsaw.shuffle_tiles(tiles, perms, jax.random.key(0))
  _, b = jigsaw.shuffle_tiles(tiles, perms, jax.random.key(1))
  assert len(np.unique(a)) > 20 and not np.array_equal(a, b)


def test_shuffle_tiles_checks_tile_count():
  perms = jigsaw.maximal_hamming_permutations(4, num_tiles=4)
  with pytest.raises(ValueError, match='tiles'):
    jigsaw.shuffle_tiles(np.zeros((2, 9, 1)), perms, jax.random.key(0))
