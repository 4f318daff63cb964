"""Weighted k-nearest-neighbour classifier on cosine similarity.

As the kNN monitor of InstDisc (Wu et al. 2018) and DINO: the k most similar
train embeddings vote for their class with weight ``exp(similarity / T)``
(k = 20, T = 0.07 by default); the class with the largest summed weight wins
(ties: the smaller label).  Neighbour ties are broken by train index (lower
first, ``lax.top_k``).  Jitted and chunked over test queries, so memory is
O(chunk x num_train).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sspr_jax.core import ops
from sspr_jax.evaluate import checks


@functools.lru_cache(maxsize=16)
def _chunk_fn(chunk_size: int, k: int, num_classes: int):
  @jax.jit
  def chunk_fn(start, test, train, train_ids, temperature):
    idx = jnp.minimum(start + jnp.arange(chunk_size), test.shape[0] - 1)
    sims = jnp.matmul(test[idx], train.T, precision=jax.lax.Precision.HIGHEST)
    top_sims, top_idx = jax.lax.top_k(sims, k)
    weights = jnp.exp(top_sims / temperature)
    votes = jax.nn.one_hot(train_ids[top_idx], num_classes) * weights[..., None]
    return jnp.sum(votes, axis=1)

  return chunk_fn


def knn_class_scores(
  train_embeddings,
  train_labels,
  test_embeddings,
  *,
  k: int = 20,
  temperature: float = 0.07,
  chunk_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
  """Summed vote weights ``[num_test, num_classes]`` and the class labels (columns).

  Raises ValueError for empty train or test embeddings, rows holding NaN or
  inf (how many, and the first), and ``k < 1``.
  """
  train = jnp.asarray(train_embeddings, jnp.float32)
  test = jnp.asarray(test_embeddings, jnp.float32)
  if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
    raise ValueError(
      f'embeddings must be [N, D] with equal D, got {train.shape} and {test.shape}'
    )
  for x, name in ((train, 'train embeddings'), (test, 'test embeddings')):
    checks.check_matrix(x, name)
    checks.check_finite(x, name)
  if k < 1:
    raise ValueError(f'k must be >= 1, got {k}')
  train, test = ops.l2_normalize(train), ops.l2_normalize(test)
  classes, train_ids = np.unique(np.asarray(train_labels), return_inverse=True)
  if len(train_ids) != train.shape[0]:
    raise ValueError(
      f'{len(train_ids)} train labels for {train.shape[0]} train embeddings'
    )
  k = min(k, train.shape[0])
  chunk_size = max(1, min(chunk_size, test.shape[0]))
  fn = _chunk_fn(chunk_size, k, len(classes))
  ids = jnp.asarray(train_ids, jnp.int32)
  parts = [
    fn(jnp.int32(s), test, train, ids, jnp.float32(temperature))
    for s in range(0, test.shape[0], chunk_size)
  ]
  return np.asarray(jnp.concatenate(parts))[: test.shape[0]], classes


def knn_predict(
  train_embeddings, train_labels, test_embeddings, **kwargs
) -> np.ndarray:
  """Predicted label per test embedding."""
  scores, classes = knn_class_scores(
    train_embeddings, train_labels, test_embeddings, **kwargs
  )
  return classes[np.argmax(scores, axis=1)]


def knn_accuracy(
  train_embeddings, train_labels, test_embeddings, test_labels, **kwargs
) -> float:
  """Fraction of test embeddings whose predicted label is right.

  A test label absent from the train labels cannot be predicted: its rows
  count as errors.
  """
  test_labels = np.asarray(test_labels)
  if test_labels.shape != (np.shape(test_embeddings)[0],):
    raise ValueError(
      f'test labels must be [N] with N = {np.shape(test_embeddings)[0]} (test embeddings rows), '
      f'got shape {test_labels.shape}'
    )
  predictions = knn_predict(
    train_embeddings, train_labels, test_embeddings, **kwargs
  )
  return float(np.mean(predictions == test_labels))
