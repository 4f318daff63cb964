import itertools

import numpy as np
import pytest

from sspr_jax.objectives import permutations


def _hamming(a, b):
  return sum(x != y for x, y in zip(a, b))


def _slow_maximal_hamming(num_permutations, num_tiles, seed):
  """Algorithm 1 of Noroozi & Favaro 2016, literally, with Python lists."""
  remaining = list(itertools.permutations(range(num_tiles)))
  j = int(np.random.default_rng(seed).integers(len(remaining)))
  chosen = []
  while len(chosen) < num_permutations:
    chosen.append(remaining.pop(j))
    sums = [sum(_hamming(p, c) for c in chosen) for p in remaining]
    if sums:
      j = sums.index(max(sums))  # first maximum, as MATLAB max / np.argmax
  return np.array(chosen)


def _pairwise_hamming(perms):
  d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
  return d[np.triu_indices(len(perms), 1)]


@pytest.mark.parametrize(
  'num_tiles,num_permutations,seed',
  [
    (4, 24, 0),
    (5, 20, 0),
    (5, 37, 3),
    (6, 15, 7),
  ],
)
def test_matches_slow_reference(num_tiles, num_permutations, seed):
  got = permutations.maximal_hamming_permutations(
    num_permutations, num_tiles, seed
  )
  want = _slow_maximal_hamming(num_permutations, num_tiles, seed)
  np.testing.assert_array_equal(got, want)


def test_nine_tiles_follows_greedy_rule():
  """Each chosen row maximises the distance sum to the rows before it (T=9)."""
  perms = permutations.maximal_hamming_permutations(100, 9, seed=0)
  candidates = permutations.all_permutations(9)
  index_of = {tuple(p): i for i, p in enumerate(candidates)}
  chosen_idx = [index_of[tuple(p)] for p in perms]
  distance_sum = np.zeros(len(candidates), np.int64)
  for i in range(1, len(perms)):
    distance_sum += (candidates != perms[i - 1]).sum(1)
    masked = distance_sum.copy()
    masked[chosen_idx[:i]] = -1
    assert chosen_idx[i] == int(np.argmax(masked)), i


def test_valid_unique_and_deterministic():
  perms = permutations.maximal_hamming_permutations(100)
  assert perms.shape == (100, 9)
  np.testing.assert_array_equal(
    np.sort(perms, axis=1), np.tile(np.arange(9), (100, 1))
  )
  assert len({tuple(p) for p in perms}) == 100
  np.testing.assert_array_equal(
    perms, permutations.maximal_hamming_permutations(100)
  )
  other = permutations.maximal_hamming_permutations(100, seed=1)
  assert not np.array_equal(perms, other)
  # The returned array is the caller's own, not the cached one.
  perms[0] = 0
  assert len(set(permutations.maximal_hamming_permutations(100)[0])) == 9


def test_mean_distance_beats_random_sets():
  perms = permutations.maximal_hamming_permutations(100)
  chosen = _pairwise_hamming(perms)
  candidates = permutations.all_permutations(9)
  rng = np.random.default_rng(0)
  random_means = []
  for _ in range(20):
    sample = candidates[rng.choice(len(candidates), size=100, replace=False)]
    random_means.append(_pairwise_hamming(sample).mean())
  assert chosen.mean() > max(random_means)
  assert chosen.min() >= 2  # distinct permutations differ in at least 2 places


def test_rejects_impossible_sizes():
  with pytest.raises(ValueError, match='num_permutations'):
    permutations.maximal_hamming_permutations(25, num_tiles=4)
  with pytest.raises(ValueError, match='num_permutations'):
    permutations.maximal_hamming_permutations(0, num_tiles=4)
