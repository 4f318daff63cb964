"""Catalogue-to-shelf metrics against a brute-force numpy top-k and
scikit-learn's average_precision_score on random vectors."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from sspr_jax.evaluate import catalogue


def brute_force(q, q_labels, c, c_labels, score, top_k=(1, 5)):
  if score == 'cosine':
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    cn = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    s = qn @ cn.T
  elif score == 'inner_product':
    s = q @ c.T
  else:  # euclidean: the negative squared distance ranks the same
    s = -((q[:, None, :] - c[None, :, :]) ** 2).sum(-1)
  order = np.argsort(-s, axis=1, kind='stable')
  hits = c_labels[order] == q_labels[:, None]
  out = {f'top{k}': float(hits[:, :k].any(1).mean()) for k in top_k}
  per_class = {}
  for i, label in enumerate(q_labels):
    positives = c_labels == label
    if not positives.any():
      continue
    ap = average_precision_score(positives, s[i])
    per_class.setdefault(label, []).append(ap)
  out['map'] = float(np.mean([np.mean(v) for v in per_class.values()]))
  out['unmatched'] = int(sum(not (c_labels == l).any() for l in q_labels))
  return out


@pytest.mark.parametrize('score', ['cosine', 'inner_product', 'euclidean'])
@pytest.mark.parametrize('per_class', [1, 3])
def test_matches_brute_force(score, per_class):
  rng = np.random.default_rng(per_class)
  num_classes, dim = 12, 8
  # Integer vectors: many tied scores, the case tie grouping is for (exact
  # in float32 for inner products and distances; cosine rounds ties apart
  # differently from float64, so it gets continuous vectors).
  grid = (lambda x: x) if score == 'cosine' else np.round
  c = grid(rng.normal(size=(num_classes * per_class, dim)))
  c_labels = np.repeat(np.arange(num_classes), per_class)
  # Queries near their class's first entry; classes 12 and 13 have no entry.
  q_labels = rng.integers(0, num_classes + 2, size=90)
  base = c[np.minimum(q_labels, num_classes - 1) * per_class]
  q = grid(base + rng.normal(scale=1.5, size=(90, dim)))
  got = catalogue.catalogue_metrics(
    q, q_labels, c, c_labels, scores=(score,), chunk_size=16
  )
  want = brute_force(q, q_labels, c, c_labels, score)
  assert 0.05 < want['top1'] < 0.95  # neither trivial nor hopeless
  assert got[f'catalogue_top1/{score}'] == pytest.approx(want['top1'])
  assert got[f'catalogue_top5/{score}'] == pytest.approx(want['top5'])
  assert got[f'catalogue_map/{score}'] == pytest.approx(want['map'], abs=1e-6)
  assert got['catalogue_unmatched'] == want['unmatched'] > 0


def test_chunking_and_label_kinds_do_not_change_results():
  rng = np.random.default_rng(0)
  c = rng.normal(size=(30, 16))
  names = np.array([f'product {i}' for i in range(30)])
  picks = rng.integers(0, 30, size=50)
  q = c[picks] + rng.normal(scale=1.0, size=(50, 16))
  by_name = catalogue.catalogue_metrics(q, names[picks], c, names, chunk_size=7)
  by_id = catalogue.catalogue_metrics(q, picks, c, np.arange(30))
  assert by_name == pytest.approx(by_id)
  # One entry per class: AP = 1 / rank of the true entry.
  r = catalogue.catalogue_per_query(q, picks, c, np.arange(30), k=30)
  ranks = 1 + np.argmax(r['nearest'] == picks[:, None], axis=1)
  np.testing.assert_allclose(r['ap'], 1.0 / ranks, rtol=1e-6)


def test_bad_inputs_name_the_problem():
  c, q = np.ones((3, 4)), np.ones((2, 5))
  with pytest.raises(ValueError, match='dimensions'):
    catalogue.catalogue_metrics(q, [0, 1], c, [0, 1, 2])
  with pytest.raises(ValueError, match='empty'):
    catalogue.catalogue_metrics(np.ones((2, 4)), [0, 1], np.ones((0, 4)), [])
  with pytest.raises(ValueError, match='Unknown score'):
    catalogue.catalogue_metrics(
      np.ones((2, 4)), [0, 1], c, [0, 1, 2], scores=('l1',)
    )
