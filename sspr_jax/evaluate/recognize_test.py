"""Prototype and kNN matching against numpy / scikit-learn; summary; drawing."""

import numpy as np
import pytest
from PIL import Image
from sklearn.neighbors import KNeighborsClassifier

from sspr_jax.evaluate import recognize


def _data(seed=0, n=60, q=23, d=8, classes=6):
  rng = np.random.default_rng(seed)
  gallery = rng.normal(size=(n, d)).astype(np.float32)
  labels = rng.integers(0, classes, size=n)
  labels[:classes] = np.arange(classes)  # Every class present.
  queries = rng.normal(size=(q, d)).astype(np.float32)
  return gallery, labels, queries


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize('chunk_size', [4, 256])
def test_prototype_matches_numpy(chunk_size):
  gallery, labels, queries = _data()
  ids, scores = recognize.match(
    queries, gallery, labels, 6, method='prototype', top_k=3,
    chunk_size=chunk_size,
  )  # fmt: skip
  g = _unit(gallery.astype(np.float64))
  protos = _unit(np.stack([g[labels == c].mean(0) for c in range(6)]))
  sims = _unit(queries.astype(np.float64)) @ protos.T
  want = np.argsort(-sims, axis=1)[:, :3]
  np.testing.assert_array_equal(ids, want)
  np.testing.assert_allclose(
    scores, np.take_along_axis(sims, want, 1), atol=1e-5
  )


def test_prototype_skips_classes_without_crops():
  gallery, labels, queries = _data()
  labels = np.where(labels == 2, 1, labels)  # No crop of class 2 left.
  ids, _ = recognize.match(queries, gallery, labels, 6, top_k=10)
  assert ids.shape == (len(queries), 5)  # top_k capped at 5 present classes
  assert not np.any(ids == 2)


@pytest.mark.parametrize('chunk_size', [5, 256])
def test_knn_matches_sklearn(chunk_size):
  gallery, labels, queries = _data(seed=1)
  temperature = 0.5
  ids, scores = recognize.match(
    queries, gallery, labels, 6, method='knn', top_k=4, knn_k=7,
    temperature=temperature, chunk_size=chunk_size,
  )  # fmt: skip
  reference = KNeighborsClassifier(
    n_neighbors=7,
    metric='cosine',
    algorithm='brute',
    weights=lambda d: np.exp((1 - d) / temperature),
  ).fit(gallery, labels)
  proba = reference.predict_proba(queries)  # Columns: classes 0..5.
  want = np.argsort(-proba, axis=1, kind='stable')[:, :4]
  np.testing.assert_array_equal(ids, want)
  np.testing.assert_allclose(
    scores, np.take_along_axis(proba, want, 1), atol=1e-5
  )


def test_match_refuses_bad_input():
  gallery, labels, queries = _data()
  with pytest.raises(ValueError, match='method'):
    recognize.match(queries, gallery, labels, 6, method='svm')
  with pytest.raises(ValueError, match='top_k'):
    recognize.match(queries, gallery, labels, 6, top_k=0)
  with pytest.raises(ValueError, match='width'):
    recognize.match(queries[:, :4], gallery, labels, 6)


def test_accuracy_summary_counts_top1_topk_and_confusions():
  summary = recognize.accuracy_summary(
    ['a', 'a', 'b', None, 'c', 'b'],
    [['a', 'b'], ['b', 'a'], ['a', 'c'], ['a', 'b'], ['a', 'b'], ['a', 'b']],
  )
  assert summary['labeled_boxes'] == 5 and summary['k'] == 2
  assert summary['top1_accuracy'] == pytest.approx(1 / 5)
  assert summary['topk_accuracy'] == pytest.approx(3 / 5)
  assert summary['most_confused'][0] == {
    'true': 'b',
    'predicted': 'a',
    'count': 2,
  }
  assert recognize.accuracy_summary([None], [['a']])['top1_accuracy'] is None


def test_annotate_draws_boxes_in_their_colours():
  image = Image.new('RGB', (80, 60), (255, 255, 255))
  out = recognize.annotate(
    image, [(10, 20, 40, 50), (45, 5, 70, 30)], ['cola', 'tea'], [True, False]
  )
  pixels = np.asarray(out)
  assert out.size == image.size and np.asarray(image).min() == 255
  assert tuple(pixels[35, 10]) == (0, 200, 0)  # Left edge of box 0.
  assert tuple(pixels[20, 69]) == (230, 0, 0)  # Right edge of box 1.
