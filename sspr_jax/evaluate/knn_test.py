import numpy as np
import pytest

from sspr_jax.evaluate import knn


def _numpy_knn_scores(train, train_labels, test, k, temperature):
  classes = np.unique(train_labels)
  train = train / np.linalg.norm(train, axis=1, keepdims=True)
  test = test / np.linalg.norm(test, axis=1, keepdims=True)
  scores = np.zeros((len(test), len(classes)))
  for i, row in enumerate(test @ train.T):
    nearest = np.argsort(-row, kind='stable')[:k]
    for j in nearest:
      scores[i, np.searchsorted(classes, train_labels[j])] += np.exp(
        row[j] / temperature
      )
  return scores


@pytest.mark.parametrize('k,chunk_size', [(20, 256), (5, 7)])
def test_knn_matches_numpy(k, chunk_size):
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(6, 10))
  train_labels = rng.integers(0, 6, size=120) * 10  # labels need not be 0..C-1
  test_labels = rng.integers(0, 6, size=45) * 10
  train = (centres[train_labels // 10] + rng.normal(size=(120, 10))).astype(
    np.float32
  )
  test = (centres[test_labels // 10] + rng.normal(size=(45, 10))).astype(
    np.float32
  )
  scores, classes = knn.knn_class_scores(
    train, train_labels, test, k=k, chunk_size=chunk_size, temperature=0.5
  )
  np.testing.assert_array_equal(classes, np.arange(6) * 10)
  ref = _numpy_knn_scores(train, train_labels, test, k, 0.5)
  np.testing.assert_allclose(scores, ref, rtol=1e-4)
  accuracy = knn.knn_accuracy(
    train, train_labels, test, test_labels, k=k, temperature=0.5
  )
  assert accuracy == np.mean(classes[ref.argmax(1)] == test_labels)
  assert accuracy > 0.5


def test_knn_bad_shapes():
  with pytest.raises(ValueError):
    knn.knn_predict(np.ones((4, 3)), [0, 1, 0, 1], np.ones((2, 5)))
  with pytest.raises(ValueError):
    knn.knn_predict(np.ones((4, 3)), [0, 1, 0], np.ones((2, 3)))
