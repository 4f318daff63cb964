import numpy as np
import pytest

from sspr_jax.evaluate import splits


def test_strict_split_hand_built():
  # class 0: 10 crops, photos a:6, b:3, c:1 -> target int(0.2*10)=2; |3-2|=|1-2|=1,
  #          tie -> b (its first crop comes first).
  # class 1: 3 crops in photo a only -> excluded.
  # class 2: 2 crops, photos c:1, d:1 -> target 1, tie -> c (first in dataset order).
  labels = np.array([0] * 10 + [1] * 3 + [2] * 2)
  origins = np.array(list('aaabbbaaac') + list('aaa') + list('cd'))
  train, test = splits.strict_origin_split(labels, origins)
  np.testing.assert_array_equal(test, [3, 4, 5, 13])
  np.testing.assert_array_equal(train, [0, 1, 2, 6, 7, 8, 9, 14])


def test_strict_split_picks_closest_count():
  # 20 crops: target 4; photo counts x:10, y:5, z:4 (not first), w:1 -> z.
  origins = np.array(['x'] * 10 + ['y'] * 5 + ['w'] + ['z'] * 4)
  labels = np.zeros(20, int)
  train, test = splits.strict_origin_split(labels, origins)
  np.testing.assert_array_equal(test, np.arange(16, 20))
  assert len(train) == 16


def test_strict_split_properties_random():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 50, size=600)
  origins = rng.integers(0, 27, size=600)
  train, test = splits.strict_origin_split(labels, origins)
  assert len(np.intersect1d(train, test)) == 0
  for cls in np.unique(labels):
    members = np.flatnonzero(labels == cls)
    cls_test = np.intersect1d(members, test)
    cls_train = np.intersect1d(members, train)
    if len(np.unique(origins[members])) < 2:
      assert len(cls_test) == len(cls_train) == 0
      continue
    assert len(np.unique(origins[cls_test])) == 1  # one photo
    assert not np.isin(origins[cls_train], origins[cls_test]).any()
    assert len(cls_test) + len(cls_train) == len(members)
  again = splits.strict_origin_split(labels, origins)
  np.testing.assert_array_equal(again[0], train)
  np.testing.assert_array_equal(again[1], test)


def test_strict_split_string_labels_and_bad_shapes():
  train, test = splits.strict_origin_split(
    ['cola', 'cola', 'tea'], ['p1', 'p2', 'p1']
  )
  assert (list(train), list(test)) == (
    [1],
    [0],
  )  # counts 1 and 1: first photo p1 is test
  with pytest.raises(ValueError):
    splits.strict_origin_split([0, 1], ['a'])


def test_standard_split_sizes_and_seed():
  labels = np.repeat(np.arange(400), 5)[:1643]
  train, test = splits.standard_split(labels, seed=1)
  assert (len(train), len(test)) == (1314, 329)
  assert len(np.union1d(train, test)) == 1643
  np.testing.assert_array_equal(splits.standard_split(labels, seed=1)[1], test)
  assert not np.array_equal(splits.standard_split(labels, seed=2)[1], test)


def test_standard_split_stratified():
  labels = np.repeat(np.arange(10), 10)
  _, test = splits.standard_split(labels, seed=0, stratify=True)
  np.testing.assert_array_equal(np.bincount(labels[test]), np.full(10, 2))
