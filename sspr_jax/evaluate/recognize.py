"""Recognition: match query embeddings to a labeled gallery, score, draw.

`match` ranks the gallery's classes for each query embedding (a product box
cut from a new shelf photo):

- 'prototype': cosine similarity to each class prototype, the L2-normalised
  mean of the class's L2-normalised gallery embeddings;
- 'knn': the k most similar gallery crops (cosine) vote for their class with
  weight exp(similarity / T) (`knn.knn_class_scores`, as the kNN evaluator);
  a class's score is its share of the votes.

Both are jitted and chunked over queries, so memory is O(chunk x N).
`accuracy_summary` turns predictions and true names into top-1 / top-k
accuracy and the most confused pairs; `annotate` draws the boxes and top-1
names on a photo (PIL), labels placed so none overlap; `report_text` is the
markdown summary (recognize.md).
"""

from __future__ import annotations

import collections
import os
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from PIL import ImageDraw

from sspr_jax.core import ops
from sspr_jax.evaluate import checks
from sspr_jax.evaluate import knn

METHODS = ('prototype', 'knn')


def prototypes(
  embeddings, labels, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
  """(prototypes [num_classes, D] L2-normalised, present [num_classes] bool).

  A class without gallery crops has a zero prototype and present False.
  """
  x = np.asarray(ops.l2_normalize(jnp.asarray(embeddings, jnp.float32)))
  labels = np.asarray(labels, np.int64)
  sums = np.zeros((num_classes, x.shape[1]), np.float64)
  np.add.at(sums, labels, x)
  present = np.bincount(labels, minlength=num_classes)[:num_classes] > 0
  return np.asarray(ops.l2_normalize(jnp.asarray(sums, jnp.float32))), present


@functools.lru_cache(maxsize=16)
def _prototype_chunk_fn(chunk_size: int, top_k: int):
  @jax.jit
  def chunk_fn(start, queries, protos, present):
    idx = jnp.minimum(start + jnp.arange(chunk_size), queries.shape[0] - 1)
    sims = jnp.matmul(
      queries[idx], protos.T, precision=jax.lax.Precision.HIGHEST
    )
    sims = jnp.where(present[None, :], sims, -jnp.inf)
    return jax.lax.top_k(sims, top_k)

  return chunk_fn


def _chunks(fn, n: int, chunk_size: int, *args):
  parts = [fn(jnp.int32(s), *args) for s in range(0, n, chunk_size)]
  scores = np.concatenate([np.asarray(p[0]) for p in parts])[:n]
  ids = np.concatenate([np.asarray(p[1]) for p in parts])[:n]
  return ids, scores


def match(
  queries,
  gallery,
  gallery_labels,
  num_classes: int,
  *,
  method: str = 'prototype',
  top_k: int = 5,
  knn_k: int = 20,
  temperature: float = 0.07,
  chunk_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
  """The top-k classes of each query: (class ids [Q, k], scores [Q, k]).

  `top_k` is capped at the number of classes the gallery holds. Scores are
  cosine similarities ('prototype') or vote shares in [0, 1] ('knn'),
  best first.
  """
  if method not in METHODS:
    raise ValueError(
      f'Unknown matching method {method!r}; valid: {", ".join(METHODS)}.'
    )
  q = jnp.asarray(queries, jnp.float32)
  g = jnp.asarray(gallery, jnp.float32)
  for x, name in ((q, 'query embeddings'), (g, 'gallery embeddings')):
    checks.check_matrix(x, name)
    checks.check_finite(x, name)
  if q.shape[1] != g.shape[1]:
    raise ValueError(
      f'query and gallery embeddings differ in width: {q.shape} and {g.shape}'
    )
  if top_k < 1:
    raise ValueError(f'top_k must be >= 1, got {top_k}')
  labels = np.asarray(gallery_labels, np.int64)
  num_present = len(np.unique(labels))
  top_k = min(top_k, num_present)
  chunk_size = max(1, min(chunk_size, q.shape[0]))
  if method == 'prototype':
    protos, present = prototypes(g, labels, num_classes)
    fn = _prototype_chunk_fn(chunk_size, top_k)
    return _chunks(
      fn,
      q.shape[0],
      chunk_size,
      ops.l2_normalize(q),
      jnp.asarray(protos),
      jnp.asarray(present),
    )
  votes, classes = knn.knn_class_scores(
    g,
    labels,
    q,
    k=min(knn_k, g.shape[0]),
    temperature=temperature,
    chunk_size=chunk_size,
  )
  # Vote shares: each class's summed weight over the row's total.
  shares = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1e-30)
  order = np.argsort(-shares, axis=1, kind='stable')[:, :top_k]
  return classes[order], np.take_along_axis(shares, order, axis=1)


def accuracy_summary(
  true_names: Sequence[str | None],
  predicted: Sequence[Sequence[str]],
  *,
  most_confused: int = 10,
) -> dict:
  """Top-1 / top-k accuracy over the boxes with a true name.

  `predicted[i]` holds the names ranked for box i (top-k); boxes whose true
  name is None or '' are left out. A true name the gallery does not hold
  counts as an error. Returns {'labeled_boxes', 'top1_accuracy',
  'topk_accuracy', 'k', 'most_confused': [{'true', 'predicted', 'count'}]}.
  """
  pairs = collections.Counter()
  top1 = topk = labeled = 0
  k = max((len(p) for p in predicted), default=0)
  for true, ranked in zip(true_names, predicted):
    if not true:
      continue
    labeled += 1
    ranked = list(ranked)
    if ranked and ranked[0] == true:
      top1 += 1
    elif ranked:
      pairs[true, ranked[0]] += 1
    topk += true in ranked
  return {
    'labeled_boxes': labeled,
    'k': k,
    'top1_accuracy': top1 / labeled if labeled else None,
    'topk_accuracy': topk / labeled if labeled else None,
    'most_confused': [
      {'true': t, 'predicted': p, 'count': n}
      for (t, p), n in sorted(pairs.items(), key=lambda x: (-x[1], x[0]))[
        :most_confused
      ]
    ],
  }


# Box colours: right, wrong, no true name.
_COLOURS = {True: (0, 200, 0), False: (230, 0, 0), None: (255, 200, 0)}
_LEGEND = {
  True: 'right',
  False: 'wrong (true name after the arrow)',
  None: 'no true name',
}


def label_text(name: str, true_name: str | None) -> str:
  """A box's label: the top-1 name, and the true one where it differs."""
  if true_name and true_name != name:
    return f'{name} -> {true_name}'
  return name


def _overlaps(a, b) -> bool:
  return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(sizes, boxes, image_size) -> list[tuple[int, ...] | None]:
  """Where each box's label goes: (x1, y1, x2, y2) rectangles inside the
  image, pairwise disjoint; None where no free place was found.

  A label sits on its box's edge (above the top, then just inside, then
  below the bottom), left- or right-aligned, else lower inside the box, in
  box order: the first boxes get the first choice.
  """
  width, height = image_size
  placed, out = [], []
  for (w, h), box in zip(sizes, boxes):
    x1, y1, x2, y2 = (int(v) for v in box)
    ys = [y1 - h, y1, y2, y2 - h] + list(range(y1 + h, y2 - h, max(1, h)))
    xs = [x1, x2 - w]
    found = None
    for y in ys:
      for x in xs:
        x = min(max(x, 0), width - w)
        rect = (x, y, x + w, y + h)
        if y < 0 or y + h > height or x < 0:
          continue
        if not any(_overlaps(rect, p) for p in placed):
          found = rect
          break
      if found:
        break
    out.append(found)
    if found:
      placed.append(found)
  return out


def _fit(draw, text: str, max_width: int) -> tuple[str, int, int]:
  """`text` cut to `max_width` pixels ('..' marks a cut); (text, w, h)."""
  cut = text
  while True:
    left, top, right, bottom = draw.textbbox((0, 0), cut)
    if right - left + 2 <= max_width or len(cut) <= 3:
      return cut, right - left + 2, bottom - top + 2
    cut = cut[: len(cut) - 3] + '..'


def annotate(
  image: Image.Image,
  boxes: Sequence[Sequence[int]],
  names: Sequence[str],
  true_names: Sequence[str | None] | None = None,
) -> Image.Image:
  """A copy of `image` (RGB) with each box drawn and labelled, and a legend
  strip below the photo.

  Boxes are green where the top-1 name is right, red where wrong (the label
  adds the true name), amber where the box has no true name. Labels never
  overlap each other (`place_labels`); one with no free place is left out,
  its box still drawn.
  """
  photo = image.convert('RGB')
  true_names = true_names if true_names is not None else [None] * len(boxes)
  right = [None if not t else t == n for n, t in zip(names, true_names)]
  probe = ImageDraw.Draw(photo)
  texts = [
    _fit(probe, label_text(n, t), photo.width)
    for n, t in zip(names, true_names)
  ]
  shown = sorted(set(right), key=lambda r: (r is None, r is False))
  line = probe.textbbox((0, 0), 'Ag')[3] + 4  # One legend row.
  out = Image.new(
    'RGB', (photo.width, photo.height + line * len(shown)), 'white'
  )
  out.paste(photo)
  draw = ImageDraw.Draw(out)
  stroke = max(1, round(min(photo.size) / 300))
  for box, r in zip(boxes, right):
    x1, y1, x2, y2 = (int(v) for v in box)
    draw.rectangle((x1, y1, x2 - 1, y2 - 1), outline=_COLOURS[r], width=stroke)
  rects = place_labels([(w, h) for _, w, h in texts], boxes, photo.size)
  for (text, _, _), rect, r in zip(texts, rects, right):
    if rect is not None:
      draw.rectangle(
        (rect[0], rect[1], rect[2] - 1, rect[3] - 1), fill=_COLOURS[r]
      )
      top = draw.textbbox((0, 0), text)[1]
      draw.text((rect[0] + 1, rect[1] + 1 - top), text, fill=(0, 0, 0))
  for i, r in enumerate(shown):
    y = photo.height + i * line + 2
    draw.rectangle((4, y, 4 + line - 4, y + line - 4), fill=_COLOURS[r])
    draw.text((line + 6, y), _LEGEND[r], fill=(0, 0, 0))
  return out


def _percent(x) -> str:
  return 'n/a' if x is None else f'{100 * x:.1f} %'


def report_text(summary: dict) -> str:
  """recognize.md: what was matched, counts, accuracy, confused pairs."""
  g, c = summary['gallery'], summary['counts']
  lines = [
    '# Recognition',
    '',
    f'{summary["boxes"]} boxes on {summary["photos"]} photos matched by '
    f'{summary["backbone"]} ({summary["method"]}) against a gallery of '
    f'{g["crops"]} crops of {g["classes"]} products'
    f'{" (cached embeddings)" if g["cache_reused"] else ""}.',
  ]
  ignored = ('photos', 'boxes', 'crops', 'unannotated_photos')
  without = c.get('photos_without_boxes', [])
  bad = {
    k: v
    for k, v in c.items()
    if v and k not in ignored and k != 'photos_without_boxes'
  }
  if bad:
    lines += [
      '',
      'Input: ' + ', '.join(f'{k} {v}' for k, v in sorted(bad.items())),
    ]
  if without:
    shown = ', '.join(os.path.basename(p) for p in without[:10])
    more = f' and {len(without) - 10} more' if len(without) > 10 else ''
    lines += [
      '',
      f'{len(without)} photos had no box to match (no annotation, or every '
      f'box skipped): {shown}{more} (all in summary.json, '
      '`counts.photos_without_boxes`).',
    ]
  if summary['labeled_boxes']:
    k = summary['k']
    lines += [
      '',
      f'| boxes with a true name | top-1 accuracy | top-{k} accuracy |',
      '|---|---|---|',
      f'| {summary["labeled_boxes"]} | {_percent(summary["top1_accuracy"])} '
      f'| {_percent(summary["topk_accuracy"])} |',
    ]
    if summary['unknown_to_gallery']:
      lines += [
        '',
        f'{summary["unknown_to_gallery"]} boxes name a product the gallery '
        'does not hold (counted as errors).',
      ]
    if summary['most_confused']:
      lines += [
        '',
        'Most confused (true -> predicted top-1):',
        '',
        '| true | predicted | boxes |',
        '|---|---|---|',
      ] + [
        f'| {p["true"]} | {p["predicted"]} | {p["count"]} |'
        for p in summary['most_confused']
      ]
  else:
    lines += ['', 'No true names on the photos: no accuracy.']
  return '\n'.join(lines)
