"""Catalogue-to-shelf recognition: queries from one set, a gallery from another.

The retail case: a store has a catalogue (one packshot or a few photos per
product) and photos taken on the shelf. Every query (a shelf photo or crop)
is ranked against the whole catalogue; nothing is left out, since the query
is not in the catalogue.

* **top-k accuracy**: a query is right at k if one of its k best-scoring
  catalogue entries has its class (ties: lower catalogue index first, as a
  stable argsort); over all queries, so a query whose class the catalogue
  lacks counts as wrong (`unmatched` counts them).
* **mAP**: AP of each query over the ranked catalogue with scikit-learn
  `average_precision_score` semantics (ties grouped, as `gallery.py`),
  over the queries whose class the catalogue holds; averaged per class, then
  over classes (class-balanced, as the full-gallery mAP). With one catalogue
  entry per class, AP = 1 / rank.

Jitted and computed in chunks of queries: memory O(chunk x catalogue size).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sspr_jax.evaluate import gallery

TOP_K = (1, 5)


@functools.lru_cache(maxsize=16)
def _chunk_fn(score: str, k: int):
  @jax.jit
  def chunk_fn(queries, q_class, catalogue, c_inv_norm, c_sq_norm, c_class):
    q_inv_norm, q_sq_norm = gallery._norms(queries)  # pylint: disable=protected-access
    scores = gallery._score_block(  # pylint: disable=protected-access
      score, queries, q_inv_norm, q_sq_norm, catalogue, c_inv_norm, c_sq_norm
    )
    is_pos = c_class[None, :] == q_class[:, None]
    ap, num_pos, _ = gallery.tie_grouped_ap(scores, is_pos)
    # top_k puts the lower index first among equal scores.
    _, nearest = jax.lax.top_k(scores, k)
    return ap, num_pos, nearest

  return chunk_fn


def catalogue_per_query(
  query_features,
  query_labels,
  catalogue_features,
  catalogue_labels,
  *,
  score: str = 'cosine',
  k: int = max(TOP_K),
  chunk_size: int | None = None,
) -> dict[str, np.ndarray]:
  """Per query: 'ap' (0 where unmatched), 'num_pos', 'nearest' [Q, k] labels."""
  if score not in gallery.SCORES:
    raise ValueError(
      f'Unknown score {score!r}; valid: {", ".join(gallery.SCORES)}.'
    )
  queries = np.asarray(query_features, np.float32)
  catalogue = np.asarray(catalogue_features, np.float32)
  q_labels = np.asarray(query_labels)
  c_labels = np.asarray(catalogue_labels)
  if queries.ndim != 2 or catalogue.ndim != 2:
    raise ValueError('Query and catalogue features must be [N, D] arrays.')
  if queries.shape[1] != catalogue.shape[1]:
    raise ValueError(
      f'Queries have {queries.shape[1]} dimensions and the catalogue '
      f'{catalogue.shape[1]}.'
    )
  if q_labels.shape != (len(queries),) or c_labels.shape != (len(catalogue),):
    raise ValueError('One label per query and per catalogue entry.')
  if not len(catalogue):
    raise ValueError('The catalogue is empty.')
  # Shared integer ids: labels may be names or ints.
  _, ids = np.unique(np.concatenate([q_labels, c_labels]), return_inverse=True)
  q_ids, c_ids = ids[: len(q_labels)], ids[len(q_labels) :]
  k = min(k, len(catalogue))
  chunk_size = int(chunk_size or gallery.default_chunk_size(len(catalogue)))
  chunk_size = max(1, min(chunk_size, max(len(queries), 1)))
  c = jnp.asarray(catalogue)
  c_inv_norm, c_sq_norm = gallery._norms(c)  # pylint: disable=protected-access
  c_class = jnp.asarray(c_ids, jnp.int32)
  fn = _chunk_fn(score, k)
  parts = []
  for start in range(0, len(queries), chunk_size):
    # Pad the last chunk to the same shape: one compile.
    q = np.zeros((chunk_size, queries.shape[1]), np.float32)
    qc = np.full((chunk_size,), -1, np.int32)
    block = queries[start : start + chunk_size]
    q[: len(block)], qc[: len(block)] = block, q_ids[start : start + chunk_size]
    parts.append(fn(q, qc, c, c_inv_norm, c_sq_norm, c_class))
  if not parts:
    empty = np.zeros((0,))
    return {'ap': empty, 'num_pos': empty.astype(int), 'nearest': empty}
  ap, num_pos, nearest = (
    np.concatenate(jax.device_get(p))[: len(queries)] for p in zip(*parts)
  )
  return {
    'ap': ap,
    'num_pos': num_pos,
    'nearest': c_labels[nearest],
  }


def catalogue_metrics(
  query_features,
  query_labels,
  catalogue_features,
  catalogue_labels,
  *,
  scores=('cosine',),
  top_k=TOP_K,
  chunk_size: int | None = None,
) -> dict[str, float]:
  """'catalogue_top{k}/<score>', 'catalogue_map/<score>', 'catalogue_unmatched'."""
  q_labels = np.asarray(query_labels)
  metrics = {}
  for score in scores:
    r = catalogue_per_query(
      query_features,
      q_labels,
      catalogue_features,
      catalogue_labels,
      score=score,
      k=max(top_k),
      chunk_size=chunk_size,
    )
    hits = r['nearest'] == q_labels[:, None]
    for k in top_k:
      metrics[f'catalogue_top{k}/{score}'] = float(np.mean(hits[:, :k].any(1)))
    matched = r['num_pos'] > 0
    _, ids = np.unique(q_labels[matched], return_inverse=True)
    metrics[f'catalogue_map/{score}'] = gallery._class_balanced(  # pylint: disable=protected-access
      r['ap'][matched], ids, int(ids.max()) + 1 if len(ids) else 0
    )[0]
    metrics['catalogue_unmatched'] = int((~matched).sum())
  return metrics
