"""Synthetic shelf photos (SKU110K layout) and labeled rack photos (Pascal VOC).

Photos are composed row by row: a textured back wall, products standing on
shelf boards (same-class facings side by side, slight overlaps), shelf lips
and price tags in front, then photo-level illumination, noise and JPEG.
A label map records which product owns every pixel, so each box is the
bounding box of the product's *visible* pixels, in PIL crop semantics
(x2, y2 exclusive).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter

from data_builders.synthetic import products

_MIN_VISIBLE_FRACTION = 0.35  # a product hidden more than this is not annotated
_MIN_PRODUCT_PIXELS = 5  # smallest product height/width the layout may produce
_KIND_CODES = {'train': 1, 'val': 2, 'test': 3, 'rack': 4}


@dataclasses.dataclass(frozen=True)
class PhotoJob:
  """Everything needed to render one photo, independent of worker process."""

  seed: int
  kind: str  # a split name or 'rack'
  index: int
  photo_size: tuple[int, int]
  rows: tuple[
    tuple[products.ProductSpec, ...], ...
  ]  # products left-to-right per row
  style: str  # 'shelf' or 'rack'


@dataclasses.dataclass(frozen=True)
class Box:
  """A visible product's box in PIL crop semantics (x2, y2 exclusive) and its class."""

  x1: int
  y1: int
  x2: int
  y2: int
  spec: products.ProductSpec


def photo_rng(
  seed: int, kind: str, index: int, stream: int
) -> np.random.Generator:
  """Independent random stream per (seed, split or 'rack', photo index, purpose)."""
  return np.random.default_rng(
    [int(seed) & 0xFFFFFFFF, _KIND_CODES[kind], int(index), stream]
  )


def check_size(photo_size: Sequence[int]) -> tuple[int, int]:
  """Validated (width, height)."""
  if len(photo_size) != 2 or min(photo_size) < 32:
    raise ValueError(
      f'photo_size must be (width, height) with both >= 32, got {photo_size!r}'
    )
  return int(photo_size[0]), int(photo_size[1])


def check_range(boxes_per_photo: Sequence[int]) -> tuple[int, int]:
  """Validated inclusive (min, max) box count."""
  lo, hi = (int(v) for v in boxes_per_photo)
  if not 1 <= lo <= hi:
    raise ValueError(
      f'boxes_per_photo must be (min, max) with 1 <= min <= max, got {boxes_per_photo!r}'
    )
  return lo, hi


def _num_rows(
  n_boxes: int, photo_size: tuple[int, int], aspect: float, rng
) -> int:
  """Rows such that products of `aspect` (width / row height) fill the photo.

  With R rows of n/R products each, a product is W*R/n wide and ~0.8*H/R
  tall, so its aspect is W*R^2/(0.8*n*H); solve for R.
  """
  w, h = photo_size
  rows = np.sqrt(0.8 * aspect * n_boxes * h / w) * rng.uniform(0.85, 1.15)
  max_rows = max(1, h // (3 * _MIN_PRODUCT_PIXELS))
  return int(np.clip(round(rows), 1, min(max_rows, n_boxes)))


def _split_counts(n: int, parts: int, rng) -> list[int]:
  """n items into `parts` rows of similar size (each >= 1)."""
  counts = np.full(parts, n // parts)
  counts[rng.permutation(parts)[: n % parts]] += 1
  for _ in range(parts):  # some unevenness, as shelves differ
    a, b = rng.integers(parts, size=2)
    move = int(rng.integers(0, max(1, counts[a] // 6) + 1))
    if a != b and counts[a] - move >= 1:
      counts[a] -= move
      counts[b] += move
  return counts.tolist()


def _facings(rng, limit: int) -> int:
  return int(min(limit, 1 + min(rng.geometric(0.35) - 1, 7)))


def shelf_rows(catalogue, n_boxes, photo_size, rng):
  """Product rows of a shelf photo: a section of the catalogue in grouped facings."""
  section_size = int(
    rng.integers(min(6, len(catalogue)), min(20, len(catalogue)) + 1)
  )
  section = [
    catalogue[i]
    for i in rng.choice(len(catalogue), size=section_size, replace=False)
  ]
  sequence, last = [], None
  while len(sequence) < n_boxes:
    spec = section[int(rng.integers(len(section)))]
    if spec is last and len(section) > 1:
      continue
    sequence += [spec] * _facings(rng, n_boxes - len(sequence))
    last = spec
  return _cut_rows(sequence, photo_size, rng)


def rack_rows(catalogue, classes, n_boxes, photo_size, rng):
  """Product rows of a rack photo showing exactly `classes` (indices), each at least once."""
  if not 1 <= len(classes) <= n_boxes:
    raise ValueError(f'{len(classes)} classes do not fit in {n_boxes} boxes')
  facings = 1 + rng.multinomial(
    n_boxes - len(classes), rng.dirichlet(np.ones(len(classes)))
  )
  order = rng.permutation(len(classes))
  sequence = [catalogue[classes[k]] for k in order for _ in range(facings[k])]
  return _cut_rows(sequence, photo_size, rng)


def _cut_rows(sequence, photo_size, rng):
  """Cuts a left-to-right product sequence into shelf rows of similar length."""
  # A row's products are scaled so its tallest one fills the row; relative to
  # the row height a product is then aspect * height_factor / (tallest factor) wide.
  factors = np.array([s.height_factor for s in sequence])
  aspect = float(
    np.mean([s.aspect for s in sequence] * factors) / np.percentile(factors, 90)
  )
  counts = _split_counts(
    len(sequence), _num_rows(len(sequence), photo_size, aspect, rng), rng
  )
  bounds = np.concatenate([[0], np.cumsum(counts)])
  return tuple(tuple(sequence[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))


# ------------------------------------------------------------- rendering


def _smooth_noise(rng, h: int, w: int, cells: int) -> np.ndarray:
  """Low-frequency noise in [-1, 1] with about `cells` cells across the long side."""
  gh = max(2, int(cells * h / max(h, w)) + 2)
  gw = max(2, int(cells * w / max(h, w)) + 2)
  grid = rng.uniform(-1, 1, size=(gh, gw)).astype(np.float32)
  return np.asarray(
    Image.fromarray(grid, 'F').resize((w, h), Image.BICUBIC), dtype=np.float32
  )


def _wall(rng, w: int, h: int, style: str) -> np.ndarray:
  if style == 'rack':
    base = rng.uniform(200, 240) * np.array(
      [1.0, rng.uniform(0.96, 1.0), rng.uniform(0.9, 1.0)]
    )
  else:
    tone = rng.uniform(40, 200)
    base = tone * (1 + rng.uniform(-0.08, 0.08, size=3))
  img = np.broadcast_to(base.astype(np.float32), (h, w, 3)).copy()
  img *= (
    1 + 0.08 * _smooth_noise(rng, h, w, 6) + 0.04 * _smooth_noise(rng, h, w, 40)
  )[..., None]
  img += 3 * rng.standard_normal(size=(h, w, 1), dtype=np.float32)
  if style == 'rack':  # pegboard holes
    step = max(6, w // 48)
    img[step // 2 :: step, step // 2 :: step] *= 0.55
  else:  # back-panel seams
    for x in np.cumsum(rng.uniform(0.15, 0.4, size=8) * w):
      if x < w:
        img[:, int(x)] *= 0.8
  return img


def _composite(
  canvas: np.ndarray,
  labels: np.ndarray,
  rgba: np.ndarray,
  x: int,
  y: int,
  label: int,
) -> int:
  """Alpha-blend `rgba` at (x, y), clipped to the canvas; returns opaque pixels written."""
  H, W = labels.shape
  h, w = rgba.shape[:2]
  x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
  if x0 >= x1 or y0 >= y1:
    return 0
  part = rgba[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
  alpha = part[..., 3:4] / 255.0
  region = canvas[y0:y1, x0:x1]
  region *= 1 - alpha
  region += part[..., :3] * alpha
  opaque = alpha[..., 0] > 0.5
  labels[y0:y1, x0:x1][opaque] = label
  return int(opaque.sum())


def _fill(canvas, labels, box, rgb) -> None:
  x0, y0, x1, y1 = (int(round(v)) for v in box)
  x0, y0 = max(x0, 0), max(y0, 0)
  if x1 > x0 and y1 > y0:
    canvas[y0:y1, x0:x1] = rgb
    labels[y0:y1, x0:x1] = -1


def _price_tag(canvas, labels, rng, x, y, w, h) -> None:
  x0, y0, w, h = int(x), int(y), max(3, int(w)), max(2, int(h))
  colour = (245, 245, 240) if rng.random() < 0.6 else (250, 220, 60)
  _fill(canvas, labels, (x0, y0, x0 + w, y0 + h), colour)
  # Printed price: a few dark bars stand in for digits at these sizes.
  for k in range(int(rng.integers(2, 5))):
    bx = x0 + w * (0.1 + 0.2 * k)
    canvas[
      y0 + int(h * 0.3) : y0 + max(int(h * 0.3) + 1, int(h * 0.75)),
      int(bx) : max(int(bx) + 1, int(bx + w * 0.12)),
    ] = (30, 30, 40)


def render_photo(job: PhotoJob) -> tuple[bytes, list[Box]]:
  """JPEG bytes and visible-product boxes of one photo (deterministic in `job`)."""
  rng = photo_rng(job.seed, job.kind, job.index, 0)
  W, H = job.photo_size
  canvas = _wall(rng, W, H, job.style)
  labels = np.full((H, W), -1, dtype=np.int32)
  rows = job.rows
  top = rng.uniform(0.0, 0.04) * H
  bottom = rng.uniform(0.0, 0.03) * H
  row_h = (H - top - bottom) / len(rows)
  board_t = max(2.0, row_h * rng.uniform(0.07, 0.1))
  if job.style == 'rack':
    board_rgb = np.array(
      [rng.uniform(150, 200), rng.uniform(110, 150), rng.uniform(70, 100)]
    )
  else:
    board_rgb = np.full(3, rng.uniform(150, 235)) * (
      1 + rng.uniform(-0.05, 0.05, size=3)
    )
  placed = []  # (spec, label, opaque pixels written, paste region)
  boards = []
  for r, row in enumerate(rows):
    row_top = top + r * row_h
    board_top = row_top + row_h - board_t
    headroom = row_h * rng.uniform(0.05, 0.12)
    inner = board_top - row_top - headroom
    heights = np.array([inner * s.height_factor for s in row]) * rng.uniform(
      0.97, 1.03, size=len(row)
    )
    widths = heights * np.array([s.aspect for s in row])
    new_group = np.array(
      [i == 0 or row[i] is not row[i - 1] for i in range(len(row))]
    )
    gaps = np.where(
      new_group,
      rng.uniform(0.0, 0.06, size=len(row)),
      rng.uniform(-0.05, 0.02, size=len(row)),
    )
    gaps[0] = 0.0
    margin = W * 0.01
    natural = widths.sum() + (gaps * widths).sum()
    # Grow or shrink the row's products together: fill the width like a
    # stocked shelf, but never taller than the space under the next board.
    scale = min((W - 2 * margin) / natural, inner / heights.max())
    heights, widths = heights * scale, widths * scale
    if min(heights.min(), widths.min()) < _MIN_PRODUCT_PIXELS:
      raise ValueError(
        f'{len(row)} products do not fit in a {W}px wide row at >= {_MIN_PRODUCT_PIXELS}px each; '
        'use a larger photo_size or fewer boxes_per_photo'
      )
    steps = np.concatenate([[0.0], widths[:-1] * (1 + gaps[1:])])
    xs = margin + np.cumsum(steps)
    free = W - 2 * margin - (xs[-1] + widths[-1] - margin)
    if free > 0:  # spread spare room between product groups and at the start
      shares = rng.dirichlet(np.ones(int(new_group.sum()) + 1))
      xs = xs + np.cumsum(shares[:-1])[np.cumsum(new_group) - 1] * free
    for spec, x, w, h in zip(row, xs, widths, heights):
      wi, hi = max(2, int(round(w))), max(2, int(round(h)))
      inst = np.asarray(products.render_instance(spec, wi, hi, rng))
      pad_x, pad_y = (inst.shape[1] - wi) // 2, (inst.shape[0] - hi) // 2
      y = int(round(board_top - hi + rng.uniform(0, 0.02) * hi))
      label, px, py = len(placed), int(round(x)) - pad_x, y - pad_y
      opaque = _composite(canvas, labels, inst, px, py, label)
      placed.append(
        (spec, label, opaque, (px, py, px + inst.shape[1], py + inst.shape[0]))
      )
    boards.append((row_top, board_top, xs, widths, new_group))
  # Shelf fronts and price tags go in front of the products.
  for row_top, board_top, xs, widths, new_group in boards:
    lip = board_top - board_t * 0.25
    _fill(canvas, labels, (0, lip, W, board_top + board_t), board_rgb)
    canvas[int(board_top + board_t * 0.35) : int(board_top + board_t) + 1] *= (
      0.85  # front-face shading
    )
    shadow_y = int(board_top + board_t) + 1
    canvas[shadow_y : shadow_y + max(1, int(board_t * 0.4))] *= 0.7
    for x, w, is_new in zip(xs, widths, new_group):
      if is_new and rng.random() < 0.8:
        tw = min(max(6, board_t * 3.0), w * 1.2)
        _price_tag(
          canvas,
          labels,
          rng,
          x + rng.uniform(0, 0.3) * w,
          board_top - board_t * 0.3,
          tw,
          board_t * 1.1,
        )
  if top > 2:  # board of the shelf above the first row
    _fill(canvas, labels, (0, top - board_t, W, top), board_rgb * 0.9)
  # Photo-level effects: uneven illumination, sensor noise, focus, JPEG.
  light = 1 + 0.18 * _smooth_noise(rng, H, W, 3)
  xx = np.linspace(-0.5, 0.5, W, dtype=np.float32)[None, :]
  yy = np.linspace(-0.5, 0.5, H, dtype=np.float32)[:, None]
  light *= 1 - 0.5 * (xx**2 + yy**2)  # vignette
  canvas *= (light * np.float32(rng.uniform(0.8, 1.12)))[..., None]
  # Camera colour rendering differs between photos: white balance (warm /
  # cool, green / magenta tint) and saturation, so that the raw colours of
  # one product vary from photo to photo.
  temp, tint = rng.uniform(-0.2, 0.2), rng.uniform(-0.07, 0.07)
  balance = np.array([1 + temp, 1 + tint, 1 - temp], dtype=np.float32)
  canvas *= balance / balance.mean()
  grey = canvas.mean(axis=2, keepdims=True)
  canvas -= grey
  canvas *= np.float32(rng.uniform(0.65, 1.2))
  canvas += grey
  canvas += np.float32(rng.uniform(1.0, 4.0)) * rng.standard_normal(
    size=canvas.shape, dtype=np.float32
  )
  img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), 'RGB')
  if rng.random() < 0.3:
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
  buf = io.BytesIO()
  img.save(buf, format='JPEG', quality=int(rng.integers(82, 95)))
  boxes = []
  for spec, label, opaque, (x0, y0, x1, y1) in placed:
    x0, y0 = max(x0, 0), max(y0, 0)
    ys, xs = np.nonzero(labels[y0:y1, x0:x1] == label)
    if opaque == 0 or len(ys) < _MIN_VISIBLE_FRACTION * opaque:
      continue
    boxes.append(
      Box(
        x0 + int(xs.min()),
        y0 + int(ys.min()),
        x0 + int(xs.max()) + 1,
        y0 + int(ys.max()) + 1,
        spec,
      )
    )
  return buf.getvalue(), boxes
