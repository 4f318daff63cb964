"""Gallery mAP checked against scikit-learn run per query (the thesis's way)."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from sspr_jax.evaluate import gallery


def _normalise(x):
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _reference_scores(emb, score):
  """Float64 score matrix (higher = more similar)."""
  e = emb.astype(np.float64)
  if score in ('cosine', 'euclidean_normalized'):
    e = _normalise(e)
  if score in ('inner_product', 'cosine'):
    return e @ e.T
  return -np.sqrt(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1))


def _sklearn_full_gallery(scores, labels):
  """Leave-one-out AP per query with sklearn; class-balanced and plain means."""
  aps, classes, top1 = [], [], []
  n = len(labels)
  for i in range(n):
    others = np.arange(n) != i
    y_true = labels[others] == labels[i]
    if not y_true.any():
      continue
    aps.append(average_precision_score(y_true, scores[i, others]))
    classes.append(labels[i])
    top1.append(y_true[np.argmax(scores[i, others])])
  aps, classes = np.array(aps), np.array(classes)
  per_class = [aps[classes == c].mean() for c in np.unique(classes)]
  return np.mean(per_class), aps.mean(), np.mean(top1), len(aps)


def _tied_data(score, seed, n=150):
  """Embeddings whose scores have many exact ties, and float64 reference scores.

  Distances and inner products of small integer vectors are exact in float32.
  For cosine, rows are power-of-two multiples of a few base vectors, so many
  cosines are exactly equal; the reference scores are computed on the base
  vectors and broadcast, so the reference ties exactly too.
  """
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, n // 3, size=n)  # some classes of size 1 -> skipped
  if score in ('inner_product', 'euclidean'):
    emb = rng.integers(-2, 3, size=(n, 5)).astype(np.float32)
    return emb, labels, _reference_scores(emb, score)
  base = rng.normal(size=(12, 6)).astype(np.float32)
  which = rng.integers(0, len(base), size=n)
  emb = (
    base[which]
    * (2.0 ** rng.integers(-3, 4, size=n)).astype(np.float32)[:, None]
  )
  return emb, labels, _reference_scores(base, score)[which][:, which]


@pytest.mark.parametrize('score', gallery.SCORES)
@pytest.mark.parametrize('method', ['compare', 'sort'])
def test_full_gallery_matches_sklearn_with_ties(score, method):
  emb, labels, ref_scores = _tied_data(score, seed=len(score))
  ref_map, ref_per_query, ref_top1, ref_count = _sklearn_full_gallery(
    ref_scores, labels
  )
  ties = (np.diff(np.sort(ref_scores, axis=1), axis=1) == 0).mean()
  assert ties > 0.5  # the case is really about ties
  for chunk_size in (1, 17, 64, 150):
    result = gallery.full_gallery_map(
      emb, labels, score=score, chunk_size=chunk_size, method=method
    )
    assert result['map'] == pytest.approx(ref_map, abs=1e-6)
    assert result['map_per_query'] == pytest.approx(ref_per_query, abs=1e-6)
    assert result['num_queries'] == ref_count
    assert result['num_skipped'] == len(labels) - ref_count > 0
  assert 0 < ref_map < 1


@pytest.mark.parametrize('score', gallery.SCORES)
def test_full_gallery_matches_sklearn_continuous(score):
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 40, size=200)
  centres = rng.normal(size=(40, 16))
  emb = (centres[labels] + rng.normal(size=(200, 16))).astype(np.float32)
  ref_scores = _reference_scores(emb, score)
  ref_map, ref_per_query, ref_top1, _ = _sklearn_full_gallery(
    ref_scores, labels
  )
  result = gallery.full_gallery_map(emb, labels, score=score, chunk_size=48)
  assert result['map'] == pytest.approx(ref_map, abs=1e-6)
  assert result['map_per_query'] == pytest.approx(ref_per_query, abs=1e-6)
  assert result['top1'] == pytest.approx(ref_top1)
  per_class = result['per_class_ap']
  assert per_class.shape == (len(result['classes']),)
  assert np.nanmean(per_class) == pytest.approx(result['map'])


def test_full_gallery_hand_computed():
  # Scores are inner products with 1-d embeddings, so the ranking is visible.
  emb = np.array([[3.0], [2.0], [2.0], [1.0], [0.0]], np.float32)
  labels = np.array([0, 0, 1, 0, 2])
  rows = gallery.full_gallery_per_query(emb, labels, score='inner_product')
  # Query 0 (s=3): others 1:6 (+), 2:6 (-), 3:3 (+), 4:0 (-).
  #   positive 1 ties with 2: precision 1/2; positive 3: 2/3.  AP = (1/2 + 2/3) / 2
  # Query 1 (s=2): 0:6 (+), 2:4, 3:2 (+), 4:0.  AP = (1/1 + 2/3) / 2
  # Query 3 (s=1): 0:3 (+), 1:2 (+), 2:2, 4:0.  AP = (1/1 + 2/3) / 2
  # Queries 2 and 4 are alone in their class: skipped.
  expected = [(1 / 2 + 2 / 3) / 2, (1 + 2 / 3) / 2, 0.0, (1 + 2 / 3) / 2, 0.0]
  np.testing.assert_allclose(rows['ap'], expected, atol=1e-6)
  np.testing.assert_array_equal(rows['num_pos'], [2, 2, 0, 2, 0])
  # Query 0's nearest (tie between 1 and 2) goes to the lower index 1: a hit.
  np.testing.assert_array_equal(rows['top1'][[0, 1, 3]], [True, True, True])
  result = gallery.full_gallery_map(emb, labels, score='inner_product')
  assert result['map'] == pytest.approx(np.mean(np.array(expected)[[0, 1, 3]]))
  assert (
    result['num_queries'],
    result['num_skipped'],
    result['num_classes'],
  ) == (3, 2, 1)
  assert np.isnan(result['per_class_ap'][1:]).all()


def test_top_k_counts_only_other_crops():
  # Query 0's nearest other crop (1) is of another class; its classmate is 2nd.
  emb = np.array(
    [[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0, 1], [0, 1], [0, 1], [0, 1]],
    np.float32,
  )
  labels = np.array([0, 1, 0, 2, 2, 2, 3])
  rows = gallery.full_gallery_per_query(emb, labels, score='cosine')
  assert not rows['top1'][0] and rows['top5'][0]
  assert rows['top1'][3] and rows['top5'][3]


def _numpy_average_gallery(emb, labels, score):
  emb = emb.astype(np.float64)
  normalised = score in ('cosine', 'euclidean_normalized')
  if normalised:
    emb = _normalise(emb)
  queries, protos = [], []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    if len(idx) < 3:
      continue
    queries.append(emb[idx[0]])
    protos.append(emb[idx[1:]].mean(0))
  queries, protos = np.array(queries), np.array(protos)
  if normalised:
    protos = _normalise(protos)
  if score in ('inner_product', 'cosine'):
    s = queries @ protos.T
  else:
    s = -np.sqrt(((queries[:, None] - protos[None]) ** 2).sum(-1))
  aps = [
    average_precision_score(np.arange(len(protos)) == i, s[i])
    for i in range(len(s))
  ]
  return np.mean(aps), len(aps)


@pytest.mark.parametrize('score', gallery.SCORES)
def test_average_gallery_matches_numpy_loop(score):
  rng = np.random.default_rng(5)
  labels = rng.integers(0, 60, size=240)
  emb = (
    rng.normal(size=(60, 8))[labels] + 1.5 * rng.normal(size=(240, 8))
  ).astype(np.float32)
  ref_map, ref_count = _numpy_average_gallery(emb, labels, score)
  for chunk_size in (None, 7):
    result = gallery.average_gallery_map(
      emb, labels, score=score, chunk_size=chunk_size
    )
    assert result['map'] == pytest.approx(ref_map, abs=1e-6)
    assert result['num_queries'] == ref_count
  assert 0.1 < ref_map < 0.99


def test_average_gallery_hand_computed_with_tie():
  # Class 0: query [1, 0], prototype mean([0, 1], [1, 1]) = [.5, 1].
  # Class 1: query [0, 2], prototype mean([0, 1], [1, 1]) = [.5, 1] (tie!).
  # Class 2 has 2 crops: neither a query nor a prototype.
  emb = np.array(
    [[1, 0], [0, 1], [1, 1], [0, 2], [0, 1], [1, 1], [5, 5], [5, 5]], np.float32
  )
  labels = np.array([0, 0, 0, 1, 1, 1, 2, 2])
  result = gallery.average_gallery_map(emb, labels, score='inner_product')
  np.testing.assert_allclose(
    result['per_class_ap'], [0.5, 0.5]
  )  # ties count against
  np.testing.assert_array_equal(result['classes'], [0, 1])
  assert result['map'] == pytest.approx(0.5)


def test_gallery_metrics_names_and_values():
  rng = np.random.default_rng(0)
  # Class 10 has one crop: no query, counted as skipped.
  labels = np.concatenate([np.repeat(np.arange(10), 4), [10]])
  emb = rng.normal(size=(41, 6)).astype(np.float32)
  metrics = gallery.gallery_metrics(emb, labels, scores=('cosine', 'euclidean'))
  assert set(metrics) == {
    f'{name}/{score}'
    for name in (
      'full_map',
      'full_map_per_query',
      'full_top1',
      'full_top5',
      'average_map',
    )
    for score in ('cosine', 'euclidean')
  } | {'full_num_queries', 'full_num_skipped'}
  assert metrics['full_num_queries'] == 40 and metrics['full_num_skipped'] == 1
  assert (
    metrics['full_map/cosine'] == gallery.full_gallery_map(emb, labels)['map']
  )


def test_bad_inputs():
  emb = np.zeros((4, 3), np.float32)
  with pytest.raises(ValueError, match='cosine'):
    gallery.full_gallery_map(emb, [0, 0, 1, 1], score='dot')
  with pytest.raises(ValueError, match='labels'):
    gallery.full_gallery_map(emb, [0, 0, 1])
  emb[1, 2] = np.nan
  with pytest.raises(ValueError, match='NaN'):
    gallery.average_gallery_map(emb, [0, 0, 1, 1])
  with pytest.raises(ValueError, match='integers'):
    gallery.full_gallery_map(np.ones((2, 2)), [0.5, 1.0])
