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


def test_annotate_draws_boxes_in_their_colours_and_a_legend():
  image = Image.new('RGB', (80, 60), (255, 255, 255))
  out = recognize.annotate(
    image,
    [(10, 20, 40, 50), (45, 5, 70, 30)],
    ['cola', 'tea'],
    ['cola', 'coffee'],
  )
  pixels = np.asarray(out)
  assert np.asarray(image).min() == 255  # The input is not drawn on.
  # The photo, then a legend row for each colour used (right, wrong).
  assert out.width == 80 and out.height > 60
  assert tuple(pixels[35, 10]) == (0, 200, 0)  # Left edge of box 0.
  assert tuple(pixels[25, 69]) == (230, 0, 0)  # Right edge of box 1.
  legend = pixels[60:]
  assert (legend == (0, 200, 0)).all(-1).any()
  assert (legend == (230, 0, 0)).all(-1).any()
  assert not (legend == (255, 200, 0)).all(-1).any()  # No unnamed box.


def test_a_wrong_label_names_the_truth():
  assert recognize.label_text('tea', 'coffee') == 'tea -> coffee'
  assert recognize.label_text('tea', 'tea') == 'tea'
  assert recognize.label_text('tea', None) == 'tea'


def test_labels_of_a_crowded_shelf_never_overlap():
  rng = np.random.default_rng(0)
  size = (320, 240)
  boxes = []
  for _ in range(150):  # SKU110K density: ~147 boxes a photo, overlapping.
    x, y = rng.integers(0, 300), rng.integers(0, 220)
    w, h = rng.integers(8, 60), rng.integers(8, 80)
    boxes.append((x, y, min(x + w, 320), min(y + h, 240)))
  sizes = [(int(rng.integers(20, 90)), 12) for _ in boxes]
  rects = recognize.place_labels(sizes, boxes, size)
  placed = [r for r in rects if r is not None]
  assert len(placed) > 50  # Most labels find a place.
  for i, a in enumerate(placed):
    assert 0 <= a[0] and a[2] <= size[0] and 0 <= a[1] and a[3] <= size[1]
    for b in placed[i + 1 :]:
      disjoint = a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
      assert disjoint, (a, b)
  for rect, (w, h) in zip(rects, sizes):
    assert rect is None or (rect[2] - rect[0], rect[3] - rect[1]) == (w, h)
