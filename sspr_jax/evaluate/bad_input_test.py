"""Evaluators on bad inputs: single-crop classes, classes only in the test
part, NaN/inf embeddings, empty arrays, mismatched lengths.

Each either gives a defined, hand-computed result or raises a ValueError that
says what is wrong; none may fail with an obscure numpy/JAX error or return a
metric silently computed on garbage.
"""

import numpy as np
import pytest

from sspr_jax.evaluate import gallery
from sspr_jax.evaluate import classifiers
from sspr_jax.evaluate import knn
from sspr_jax.evaluate import splits

STEPS = 40


# ---------------------------------------------------------------------------
# Classes with a single crop.


def test_full_gallery_skips_single_crop_classes_but_keeps_them_as_distractors():
  # Inner products of 1-d embeddings: a0 = 2, a1 = 1 (class 0), s = 3 (alone).
  emb = np.array([[2.0], [1.0], [3.0]], np.float32)
  labels = np.array([0, 0, 1])
  result = gallery.full_gallery_map(emb, labels, score='inner_product')
  # Query a0: s (6) outranks a1 (2): AP 1/2.  Query a1: s (3) outranks a0 (2):
  # AP 1/2.  Query s has no other crop of its class: skipped, not AP 0.
  assert result['map'] == pytest.approx(0.5)
  assert (
    result['num_queries'],
    result['num_skipped'],
    result['num_classes'],
  ) == (2, 1, 1)
  assert result['top1'] == 0.0
  np.testing.assert_array_equal(np.isnan(result['per_class_ap']), [False, True])


def test_full_gallery_of_only_single_crop_classes_is_nan_not_zero():
  emb = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  result = gallery.full_gallery_map(emb, np.arange(5))
  assert np.isnan(result['map']) and np.isnan(result['top1'])
  assert (
    result['num_queries'],
    result['num_skipped'],
    result['num_classes'],
  ) == (0, 5, 0)


def test_average_gallery_ignores_classes_with_fewer_than_three_crops():
  # Classes 0 (3 crops) and 1 (4 crops) point along x and y; the singleton
  # class 2 and the pair class 3 lie far along x + y: as prototypes they
  # would outrank the true ones (inner product 5 > 1), so AP 1 for both
  # queries shows that they are neither queries nor prototypes.
  emb = np.array(
    [
      [1, 0],
      [1, 0],
      [1, 0],
      [0, 1],
      [0, 1],
      [0, 1],
      [0, 1],
      [5, 5],
      [5, 5],
      [5, 5],
    ],
    np.float32,
  )
  labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 3, 3])
  result = gallery.average_gallery_map(emb, labels, score='inner_product')
  np.testing.assert_array_equal(result['classes'], [0, 1])
  np.testing.assert_allclose(result['per_class_ap'], [1.0, 1.0])
  assert result['map'] == 1.0 and result['num_queries'] == 2
  none = gallery.average_gallery_map(emb[7:], labels[7:], score='inner_product')
  assert np.isnan(none['map']) and none['num_queries'] == 0


# ---------------------------------------------------------------------------
# Classes in the test part that the head never saw in training.


def test_classification_metrics_counts_unseen_test_classes_as_errors():
  classes = np.array([0, 1])  # What the head was trained on.
  scores = np.array(
    [
      [0.9, 0.1],  # true 0: right, rank 1
      [0.2, 0.8],  # true 1: right, rank 1
      [0.6, 0.4],  # true 7: unseen, predicted 0
      [0.3, 0.7],
    ]
  )  # true 7: unseen, predicted 1
  m = classifiers.classification_metrics([0, 1, 7, 7], scores, classes)
  assert m['accuracy'] == pytest.approx(2 / 4)  # Unseen rows are errors.
  np.testing.assert_allclose(m['ap'], [1, 1, 0, 0])
  assert m['map'] == pytest.approx((1 + 1 + 0) / 3)  # Class 7 counts, AP 0.
  assert m['num_unseen'] == 2
  np.testing.assert_array_equal(m['unseen_labels'], [7])
  np.testing.assert_array_equal(m['labels'], [0, 1, 7])
  np.testing.assert_array_equal(
    m['confusion'], [[1, 0, 0], [0, 1, 0], [1, 1, 0]]
  )
  np.testing.assert_allclose(m['recall'], [1, 1, 0])
  seen = classifiers.classification_metrics([0, 1], scores[:2], classes)
  assert seen['num_unseen'] == 0 and seen['unseen_labels'].size == 0


def test_few_label_eval_with_single_crop_and_test_only_classes():
  # 4 well separated classes of 8 crops, and 6 classes of a single crop; the
  # standard split (seed 3) puts two of them in the test part only.
  rng = np.random.default_rng(0)
  centres = np.eye(10, dtype=np.float32) * 5
  labels = np.concatenate([np.repeat(np.arange(4), 8), np.arange(4, 10)])
  x = centres[labels] + 0.1 * rng.normal(size=(len(labels), 10)).astype(
    np.float32
  )
  train, test = splits.standard_split(labels, seed=3)
  unseen = ~np.isin(labels[test], labels[train])
  assert (
    0 < unseen.sum() < len(test)
  )  # The case is really about unseen classes.
  r = classifiers.few_label_eval(
    x,
    labels,
    split='standard',
    seed=3,
    heads=('linear',),
    max_iter=STEPS,
    linear_alphas=(0.01,),
    keep_details=True,
  )
  assert r['num_test_unseen'] == unseen.sum()
  lin = r['linear']
  assert lin['num_unseen'] == unseen.sum()
  np.testing.assert_array_equal(
    lin['unseen_labels'], np.unique(labels[test][unseen])
  )
  # Every seen test crop is right (well separated); unseen ones cannot be.
  np.testing.assert_array_equal(
    lin['predictions'][~unseen], labels[test][~unseen]
  )
  assert lin['accuracy'] == pytest.approx((~unseen).sum() / len(test))
  np.testing.assert_array_equal(lin['ap'][unseen], 0)
  # The single crops in the train part are classes the head can predict.
  assert set(lin['predictions']) <= set(labels[train])
  # The strict split leaves single-crop classes out (one photo each).
  origins = np.arange(len(labels)) % 3
  strict = classifiers.few_label_eval(
    x, labels, origins, heads=(), max_iter=STEPS
  )
  assert strict['num_classes'] == 4 and strict['num_test_unseen'] == 0


# ---------------------------------------------------------------------------
# NaN or inf embeddings: how many rows, and the first.


def _with_nonfinite(n=10, d=4):
  x = np.random.default_rng(1).normal(size=(n, d)).astype(np.float32)
  x[2, 1] = np.nan
  x[5, 0] = np.inf
  x[7, 3] = -np.inf
  return x


NONFINITE = r'contain NaN or inf in 3 of 10 rows \(first: row 2\)'


@pytest.mark.parametrize(
  'fn', [gallery.full_gallery_map, gallery.average_gallery_map]
)
def test_gallery_rejects_nonfinite_rows(fn):
  with pytest.raises(ValueError, match='embeddings ' + NONFINITE):
    fn(_with_nonfinite(), np.arange(10) % 3)


def test_knn_rejects_nonfinite_rows():
  bad, good = _with_nonfinite(), np.ones((10, 4), np.float32)
  labels = np.arange(10) % 2
  with pytest.raises(ValueError, match='train embeddings ' + NONFINITE):
    knn.knn_accuracy(bad, labels, good, labels)
  with pytest.raises(ValueError, match='test embeddings ' + NONFINITE):
    knn.knn_accuracy(good, labels, bad, labels)


def test_heads_reject_nonfinite_rows():
  bad, good = _with_nonfinite(), np.ones((10, 4), np.float32)
  labels = np.arange(10) % 2
  with pytest.raises(ValueError, match='train embeddings ' + NONFINITE):
    classifiers.cross_validate(bad, labels, good, head='linear', max_iter=2)
  with pytest.raises(ValueError, match='test embeddings ' + NONFINITE):
    classifiers.cross_validate(good, labels, bad, head='linear', max_iter=2)
  with pytest.raises(ValueError, match='^embeddings ' + NONFINITE):
    classifiers.few_label_eval(
      bad, labels, np.arange(10) % 3, heads=('linear',), max_iter=2
    )


# ---------------------------------------------------------------------------
# Empty arrays and mismatched lengths.


EMPTY = np.zeros((0, 4), np.float32)
NO_LABELS = np.zeros(0, np.int64)


@pytest.mark.parametrize(
  'fn',
  [
    gallery.full_gallery_map,
    gallery.average_gallery_map,
    gallery.gallery_metrics,
  ],
)
def test_gallery_rejects_empty(fn):
  with pytest.raises(
    ValueError,
    match=r'empty gallery: embeddings have 0 rows \(shape \(0, 4\)\)',
  ):
    fn(EMPTY, NO_LABELS)


def test_knn_rejects_empty():
  x, labels = np.eye(4, dtype=np.float32), np.arange(4)
  with pytest.raises(
    ValueError, match=r'train embeddings are empty \(shape \(0, 4\)\)'
  ):
    knn.knn_accuracy(EMPTY, NO_LABELS, x, labels)
  with pytest.raises(
    ValueError, match=r'test embeddings are empty \(shape \(0, 4\)\)'
  ):
    knn.knn_accuracy(x, labels, EMPTY, NO_LABELS)
  with pytest.raises(ValueError, match='k must be >= 1'):
    knn.knn_predict(x, labels, x, k=0)
  with pytest.raises(ValueError, match=r'test labels must be \[N\] with N = 4'):
    knn.knn_accuracy(x, labels, x, labels[:3])


def test_heads_reject_empty_and_mismatched_lengths():
  x = np.random.default_rng(2).normal(size=(10, 4)).astype(np.float32)
  labels = np.arange(10) % 2
  with pytest.raises(
    ValueError, match=r'train embeddings are empty \(shape \(0, 4\)\)'
  ):
    classifiers.cross_validate(EMPTY, NO_LABELS, x, head='linear', max_iter=2)
  for split in ('strict', 'standard'):
    with pytest.raises(
      ValueError, match=r'^embeddings are empty \(shape \(0, 4\)\)'
    ):
      classifiers.few_label_eval(
        EMPTY, NO_LABELS, NO_LABELS, split=split, max_iter=2
      )
  # One label short: rows and labels would silently be paired wrongly.
  with pytest.raises(
    ValueError,
    match=r'labels must be \[10\] \(embeddings rows\), got shape \(9,\)',
  ):
    classifiers.few_label_eval(x, labels[:9], np.arange(9) % 3, max_iter=2)
  with pytest.raises(ValueError, match=r'origins must be \[10\]'):
    classifiers.few_label_eval(x, labels, np.arange(9) % 3, max_iter=2)
  with pytest.raises(ValueError, match=r'train labels must be \[10\]'):
    classifiers.cross_validate(x, labels[:9], x, head='linear', max_iter=2)


def test_standard_split_rejects_empty():
  with pytest.raises(ValueError, match='nothing to split'):
    splits.standard_split([])
