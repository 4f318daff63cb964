"""Query-matching mAP on a labeled gallery (REFERENCE.md, "Evaluation").

Two metrics, both jitted and computed in chunks of queries so that memory is
O(chunk x N), never N x N:

* **Full-gallery mAP** (leave-one-out): every crop is a query against all other
  crops; AP follows scikit-learn ``average_precision_score`` (ties grouped);
  queries without another crop of their class are skipped; AP is averaged per
  class, then over classes.
* **Average-gallery mAP**: for each class with >= 3 crops, the first crop (in
  dataset order) is the query and the mean of its other crops is the class
  prototype; the query is ranked against all prototypes; AP = 1 / rank.

Tie-grouped AP in closed form.  scikit-learn computes
``AP = sum_t (R_t - R_{t-1}) P_t`` over distinct score thresholds ``t``
(descending).  Recall increases only at thresholds that hold positives, by
(#positives with score == t) / P, so
``AP = mean over positives p of  pos(>= s_p) / all(>= s_p)``:
each positive takes the precision at the END of its tie group.  Per query row
we sort once (stable, descending), find each position's tie-group end with a
reverse cumulative min, and read the cumulative positive count there.

Scores (higher = more similar).  AP and top-k depend only on the order of the
scores, so distances are ranked by their negative SQUARED value (same order
as the negative distance, without sqrt rounding merging close values):

* ``inner_product``: ``q . g``
* ``cosine``: ``q . g / (|q| |g|)`` (norms clamped at 1e-12: a zero vector has
  cosine 0, as after ``sklearn.preprocessing.normalize``)
* ``euclidean``: ``-(|q|^2 + |g|^2 - 2 q . g)``
* ``euclidean_normalized``: Euclidean on L2-normalised vectors,
  ``-(2 - 2 cos)``; it ranks like ``cosine`` (exactly for cos >= 0.5, where
  the subtraction is exact; below, float32 rounding may merge close values).

Top-k: a query is correct at k if any of its k nearest OTHER crops shares its
class; score ties are broken by dataset order (lower index ranks first, as a
stable argsort would).  Top-k is averaged over the same queries as mAP (those
with at least one other positive), per query (not class-balanced).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sspr_jax.core import ops
from sspr_jax.evaluate import checks

SCORES = ('inner_product', 'cosine', 'euclidean', 'euclidean_normalized')

# Aim for about this many [chunk, N] elements per intermediate (~16 MB in f32),
# and at most 256 queries a chunk: larger chunks were slower on CPU (the
# [chunk, M, N] comparisons leave the cache; 0.13 s vs 0.08 s at N = 1,643).
_CHUNK_ELEMENTS = 2**22
_MAX_CHUNK = 256
_EPS = 1e-12
# Largest class for which the O(M N) counting method is used instead of the
# O(N log N) sort (XLA's CPU sort is slow: ~25 ms for 64 x 1,643 values).
_COMPARE_MAX_CLASS_SIZE = 64


def default_chunk_size(num_items: int) -> int:
  """Queries per chunk so one [chunk, N] block stays around 16 MB."""
  return int(np.clip(_CHUNK_ELEMENTS // max(num_items, 1), 8, _MAX_CHUNK))


def _check_inputs(embeddings, labels, score: str):
  if score not in SCORES:
    raise ValueError(
      f'unknown score {score!r}; valid scores: {", ".join(SCORES)}'
    )
  emb = _as_float32(embeddings)
  checks.check_matrix(
    emb,
    empty='empty gallery: embeddings have 0 rows (shape {shape}); '
    'nothing to evaluate',
  )
  labels = np.asarray(labels)
  if labels.ndim != 1 or labels.shape[0] != emb.shape[0]:
    raise ValueError(
      f'labels must be [N] with N = {emb.shape[0]} (embeddings rows), got shape {labels.shape}'
    )
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integers, got dtype {labels.dtype}')
  checks.check_finite(emb)
  classes, class_ids = np.unique(labels, return_inverse=True)
  return emb, classes, class_ids.astype(np.int32)


def _as_float32(x) -> jax.Array:
  """float32 jax array; a float32 numpy array is transferred with one copy only."""
  if isinstance(x, np.ndarray) and x.dtype == np.float32:
    # jnp.asarray (even with copy=False) stages a second transient host
    # copy (+800 MB at N = 100k, D = 2048, measured on CPU); device_put
    # does not.
    return jax.device_put(x)
  return jnp.asarray(x, dtype=jnp.float32)


def _inverse_norms(x: jax.Array) -> jax.Array:
  # Scores scale the dot products by these instead of normalising the
  # gallery: no normalised [N, D] copy. Same clamp as ops.l2_normalize.
  return 1.0 / jnp.maximum(jnp.linalg.norm(x, axis=-1), _EPS)


@jax.jit
def _norms(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Inverse L2 norms and squared norms; jitted so x * x is never materialised."""
  return _inverse_norms(x), jnp.sum(jnp.square(x), axis=-1)


def _score_block(
  score: str, queries, q_inv_norm, q_sq_norm, gallery, g_inv_norm, g_sq_norm
):
  """[C, D] x [N, D] -> [C, N] scores (higher = more similar)."""
  dots = jnp.matmul(queries, gallery.T, precision=jax.lax.Precision.HIGHEST)
  if score == 'inner_product':
    return dots
  cos = dots * q_inv_norm[:, None] * g_inv_norm[None, :]
  if score == 'cosine':
    return cos
  if score == 'euclidean_normalized':
    return 2.0 * cos - 2.0
  return 2.0 * dots - q_sq_norm[:, None] - g_sq_norm[None, :]  # euclidean


def _query_block(
  start, chunk_size, gallery, g_inv_norm, g_sq_norm, class_ids, score
):
  """Scores of queries start..start+C-1 against the gallery, self set to -inf."""
  num_items = gallery.shape[0]
  query_idx = start + jnp.arange(chunk_size)
  # Clamp padded queries to a valid row; the caller drops their results.
  safe_idx = jnp.minimum(query_idx, num_items - 1)
  scores = _score_block(
    score,
    gallery[safe_idx],
    g_inv_norm[safe_idx],
    g_sq_norm[safe_idx],
    gallery,
    g_inv_norm,
    g_sq_norm,
  )
  is_self = jnp.arange(num_items)[None, :] == query_idx[:, None]
  # Self ranks last and is never positive, so it enters no ">= score" count.
  return jnp.where(is_self, -jnp.inf, scores), query_idx, class_ids[safe_idx]


def tie_grouped_ap(scores: jax.Array, is_pos: jax.Array):
  """Per row of [Q, N] scores: (AP, #positives, positives in ranked order).

  scikit-learn's `average_precision_score` (ties grouped; see the module
  docstring) by sorting each row once: O(N log N) per row, any class size.
  AP is 0 for a row without positives.
  """
  num_items = scores.shape[1]
  num_pos = jnp.sum(is_pos, axis=1, dtype=jnp.int32)
  # Stable ascending sort of -score = descending score, ties by index.
  # "+ 0.0" turns -0.0 into 0.0 so the total-order sort keeps them together.
  neg_sorted, pos_sorted = jax.lax.sort(
    (-scores + 0.0, is_pos.astype(jnp.int32)),
    dimension=1,
    is_stable=True,
    num_keys=1,
  )
  cum_pos = jnp.cumsum(pos_sorted, axis=1, dtype=jnp.int32)
  positions = jnp.arange(num_items, dtype=jnp.int32)
  is_group_end = jnp.concatenate(
    [
      neg_sorted[:, 1:] != neg_sorted[:, :-1],
      jnp.ones((scores.shape[0], 1), bool),
    ],
    axis=1,
  )
  group_end = jax.lax.cummin(
    jnp.where(is_group_end, positions[None, :], num_items - 1),
    axis=1,
    reverse=True,
  )
  pos_at_least = jnp.take_along_axis(cum_pos, group_end, axis=1)
  precision = pos_at_least.astype(jnp.float32) / (group_end + 1).astype(
    jnp.float32
  )
  ap_sum = jnp.sum(jnp.where(pos_sorted > 0, precision, 0.0), axis=1)
  ap = ap_sum / jnp.maximum(num_pos, 1).astype(jnp.float32)
  return ap, num_pos, pos_sorted


def _make_sort_chunk_fn(chunk_size: int, score: str):
  """AP by sorting each score row once: O(N log N) per query, any class size."""

  @jax.jit
  def chunk_fn(start, gallery, g_inv_norm, g_sq_norm, class_ids, members):
    del members
    num_items = gallery.shape[0]
    scores, query_idx, query_class = _query_block(
      start, chunk_size, gallery, g_inv_norm, g_sq_norm, class_ids, score
    )
    is_pos = (class_ids[None, :] == query_class[:, None]) & (
      jnp.arange(num_items)[None, :] != query_idx[:, None]
    )
    ap, num_pos, pos_sorted = tie_grouped_ap(scores, is_pos)
    top1 = pos_sorted[:, 0] > 0
    top5 = jnp.any(pos_sorted[:, : min(5, num_items)] > 0, axis=1)
    return ap, num_pos, top1, top5

  return chunk_fn


def _make_compare_chunk_fn(chunk_size: int, score: str):
  """AP by counting, for each positive, the items scoring >= it: O(M N) per query.

  ``members`` is [num_classes, M] (crop indices of each class, -1 padded), so
  this is much faster than sorting when classes are small (products: ~4).
  """

  @jax.jit
  def chunk_fn(start, gallery, g_inv_norm, g_sq_norm, class_ids, members):
    scores, query_idx, query_class = _query_block(
      start, chunk_size, gallery, g_inv_norm, g_sq_norm, class_ids, score
    )
    pos_idx = members[query_class]  # [C, M]
    valid = (pos_idx >= 0) & (pos_idx != query_idx[:, None])
    pos_scores = jnp.take_along_axis(scores, jnp.maximum(pos_idx, 0), axis=1)
    num_pos = jnp.sum(valid, axis=1, dtype=jnp.int32)
    # One positive column at a time: a [C, M, N] comparison would be
    # materialised by XLA:CPU (230 MB at C = 41, M = 14, N = 100k).
    count_all = jax.lax.map(
      lambda column: jnp.sum(
        scores >= column[:, None], axis=1, dtype=jnp.int32
      ),
      pos_scores.T,
    ).T
    count_pos = jnp.sum(
      valid[:, None, :] & (pos_scores[:, None, :] >= pos_scores[:, :, None]),
      axis=2,
      dtype=jnp.int32,
    )
    precision = count_pos.astype(jnp.float32) / jnp.maximum(
      count_all, 1
    ).astype(jnp.float32)
    ap = jnp.sum(jnp.where(valid, precision, 0.0), axis=1) / jnp.maximum(
      num_pos, 1
    ).astype(jnp.float32)
    # top_k puts the lower index first among equal scores.
    _, nearest = jax.lax.top_k(scores, min(5, scores.shape[1]))
    hits = class_ids[nearest] == query_class[:, None]
    return ap, num_pos, hits[:, 0], jnp.any(hits, axis=1)

  return chunk_fn


@functools.lru_cache(maxsize=32)
def _chunk_fn(chunk_size: int, score: str, method: str):
  make = _make_compare_chunk_fn if method == 'compare' else _make_sort_chunk_fn
  return make(chunk_size, score)


def _class_members(class_ids: np.ndarray) -> np.ndarray:
  """[num_classes, max class size] crop indices per class, padded with -1."""
  order = np.argsort(class_ids, kind='stable')
  counts = np.bincount(class_ids)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  slot = np.arange(len(class_ids)) - np.repeat(starts, counts)
  members = np.full((len(counts), counts.max()), -1, dtype=np.int32)
  members[class_ids[order], slot] = order
  return members


def full_gallery_per_query(
  embeddings,
  labels,
  *,
  score: str = 'cosine',
  chunk_size: int | None = None,
  num_queries: int | None = None,
  method: str = 'auto',
) -> dict[str, np.ndarray]:
  """Per-query leave-one-out AP, #other positives, top-1 and top-5 hits.

  ``num_queries`` limits the evaluation to the first queries (for timing or
  memory probes); the gallery is always all N crops.  AP of a query without
  another positive is 0 and must be skipped by the caller (``num_pos == 0``).
  ``method``: ``"compare"`` counts items scoring >= each positive (cost grows
  with the largest class), ``"sort"`` sorts each row; ``"auto"`` uses
  ``compare`` when the largest class has at most 64 crops.  Both give the same
  values.
  """
  emb, _, class_ids = _check_inputs(embeddings, labels, score)
  if method not in ('auto', 'compare', 'sort'):
    raise ValueError(f'unknown method {method!r}; valid: auto, compare, sort')
  members = _class_members(class_ids)
  if method == 'auto':
    method = (
      'compare' if members.shape[1] <= _COMPARE_MAX_CLASS_SIZE else 'sort'
    )
  num_items = emb.shape[0]
  num_queries = (
    num_items if num_queries is None else int(min(num_queries, num_items))
  )
  chunk_size = int(chunk_size or default_chunk_size(num_items))
  if chunk_size < 1:
    raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
  chunk_size = min(chunk_size, num_items)
  g_inv_norm, g_sq_norm = _norms(emb)
  ids, members = jnp.asarray(class_ids), jnp.asarray(members)
  fn = _chunk_fn(chunk_size, score, method)
  # Dispatch is asynchronous: no host sync until the concatenated fetch.
  parts = [
    fn(jnp.int32(start), emb, g_inv_norm, g_sq_norm, ids, members)
    for start in range(0, num_queries, chunk_size)
  ]
  ap, num_pos, top1, top5 = (
    np.asarray(jnp.concatenate(p))[:num_queries] for p in zip(*parts)
  )
  return {
    'ap': ap,
    'num_pos': num_pos,
    'top1': top1,
    'top5': top5,
    'class_ids': class_ids[:num_queries],
  }


def _class_balanced(
  values: np.ndarray, class_ids: np.ndarray, num_classes: int
):
  """Mean per class (NaN where a class has no value), then over classes."""
  sums = np.bincount(class_ids, weights=values, minlength=num_classes)
  counts = np.bincount(class_ids, minlength=num_classes)
  with np.errstate(invalid='ignore', divide='ignore'):
    per_class = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
  evaluated = counts > 0
  return (
    float(per_class[evaluated].mean()) if evaluated.any() else float('nan')
  ), per_class


def full_gallery_map(
  embeddings,
  labels,
  *,
  score: str = 'cosine',
  chunk_size: int | None = None,
  method: str = 'auto',
) -> dict[str, Any]:
  """Full-gallery leave-one-out mAP (class-balanced), per-query mAP, top-1/5.

  Returns ``map`` (class-balanced), ``map_per_query``, ``top1``, ``top5``
  (means over evaluated queries), ``num_queries`` (evaluated), ``num_skipped``
  (queries without another crop of their class), ``num_classes`` (classes with
  an evaluated query), ``classes`` (sorted unique labels) and
  ``per_class_ap`` aligned with ``classes`` (NaN for classes with one crop).
  """
  rows = full_gallery_per_query(
    embeddings, labels, score=score, chunk_size=chunk_size, method=method
  )
  keep = rows['num_pos'] > 0
  classes = np.unique(np.asarray(labels))
  ap = rows['ap'][keep].astype(np.float64)
  class_map, per_class = _class_balanced(
    ap, rows['class_ids'][keep], len(classes)
  )
  nan = float('nan')
  return {
    'map': class_map,
    'map_per_query': float(ap.mean()) if ap.size else nan,
    'top1': float(rows['top1'][keep].mean()) if ap.size else nan,
    'top5': float(rows['top5'][keep].mean()) if ap.size else nan,
    'num_queries': int(keep.sum()),
    'num_skipped': int((~keep).sum()),
    'num_classes': int(np.isfinite(per_class).sum()),
    'classes': classes,
    'per_class_ap': per_class,
  }


def _prototypes(emb: np.ndarray, class_ids: np.ndarray, score: str):
  """First crop of each class with >= 3 crops, and the mean of its other crops.

  For ``cosine`` and ``euclidean_normalized`` the crops are L2-normalised
  before averaging and the mean is L2-normalised again (REFERENCE: "mean of
  the others, L2-normalised for cosine"; the second normalisation does not
  change cosine, and puts the prototype on the unit sphere for
  ``euclidean_normalized``).  ``inner_product`` and ``euclidean`` use the mean
  of the raw crops.
  """
  normalised = score in ('cosine', 'euclidean_normalized')
  if normalised:
    emb = ops.l2_normalize(emb)
  num_classes = int(class_ids.max()) + 1
  counts = np.bincount(class_ids, minlength=num_classes)
  # First occurrence of each class in dataset order.
  first = np.full(num_classes, len(class_ids), dtype=np.int64)
  np.minimum.at(first, class_ids, np.arange(len(class_ids)))
  chosen = np.flatnonzero(counts >= 3)
  sums = jax.ops.segment_sum(
    emb, jnp.asarray(class_ids), num_segments=num_classes
  )
  queries = emb[first[chosen]]
  protos = (sums[chosen] - queries) / (counts[chosen] - 1).astype(np.float32)[
    :, None
  ]
  if normalised:
    protos = ops.l2_normalize(protos)
  return queries, protos, chosen


def _make_average_chunk_fn(chunk_size: int, score: str):
  @jax.jit
  def chunk_fn(start, queries, protos):
    num_protos = protos.shape[0]
    query_idx = start + jnp.arange(chunk_size)
    safe_idx = jnp.minimum(query_idx, num_protos - 1)
    q = queries[safe_idx]
    scores = _score_block(
      score,
      q,
      _inverse_norms(q),
      jnp.sum(jnp.square(q), axis=1),
      protos,
      _inverse_norms(protos),
      jnp.sum(jnp.square(protos), axis=1),
    )
    true_score = jnp.take_along_axis(scores, safe_idx[:, None], axis=1)
    # sklearn groups ties: the one positive gets precision 1 / #(score >= its score).
    rank = jnp.sum(scores >= true_score, axis=1, dtype=jnp.int32)
    return 1.0 / rank.astype(jnp.float32), rank == 1

  return chunk_fn


@functools.lru_cache(maxsize=32)
def _average_chunk_fn(chunk_size: int, score: str):
  return _make_average_chunk_fn(chunk_size, score)


def average_gallery_map(
  embeddings, labels, *, score: str = 'cosine', chunk_size: int | None = None
) -> dict[str, Any]:
  """Average-gallery mAP: first crop of each class vs. class prototypes.

  Only classes with >= 3 crops take part (as queries and as prototypes).
  Each query has one positive, so AP = 1 / rank with ties counted against
  it (rank = #prototypes scoring >= the true one, as sklearn).  Each class
  has one query, so the class-balanced mean is the plain mean.  Returns
  ``map``, ``top1``, ``num_queries``, ``classes`` (labels of the queries'
  classes) and ``per_class_ap`` aligned with them.
  """
  emb, classes, class_ids = _check_inputs(embeddings, labels, score)
  queries, protos, chosen = _prototypes(emb, class_ids, score)
  num_protos = protos.shape[0]
  if num_protos == 0:
    return {
      'map': float('nan'),
      'top1': float('nan'),
      'num_queries': 0,
      'classes': classes[chosen],
      'per_class_ap': np.zeros(0),
    }
  chunk_size = min(
    int(chunk_size or default_chunk_size(num_protos)), num_protos
  )
  fn = _average_chunk_fn(chunk_size, score)
  parts = [
    fn(jnp.int32(s), queries, protos) for s in range(0, num_protos, chunk_size)
  ]
  ap, top1 = (np.asarray(jnp.concatenate(p))[:num_protos] for p in zip(*parts))
  return {
    'map': float(ap.astype(np.float64).mean()),
    'top1': float(top1.mean()),
    'num_queries': int(num_protos),
    'classes': classes[chosen],
    'per_class_ap': ap,
  }


def gallery_metrics(
  embeddings,
  labels,
  scores: Sequence[str] = SCORES,
  *,
  chunk_size: int | None = None,
) -> dict[str, float]:
  """Both mAP variants for each score, flat names like ``full_map/cosine``,
  and the full gallery's ``full_num_queries`` / ``full_num_skipped`` (crops
  without another of their class: no query, still a distractor)."""
  metrics: dict[str, float] = {}
  for score in scores:
    full = full_gallery_map(
      embeddings, labels, score=score, chunk_size=chunk_size
    )
    metrics['full_num_queries'] = full['num_queries']
    metrics['full_num_skipped'] = full['num_skipped']
    metrics[f'full_map/{score}'] = full['map']
    metrics[f'full_map_per_query/{score}'] = full['map_per_query']
    metrics[f'full_top1/{score}'] = full['top1']
    metrics[f'full_top5/{score}'] = full['top5']
    metrics[f'average_map/{score}'] = average_gallery_map(
      embeddings, labels, score=score
    )['map']
  return metrics
