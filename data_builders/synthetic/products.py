"""Procedurally drawn product classes and their per-instance variations.

A class is a `ProductSpec`, fully determined by (seed, class_id). Its canonical
artwork is drawn once with PIL (RGBA, transparent outside the silhouette);
every instance on a photo is that artwork resized and varied in geometry,
lighting and sharpness, so instances of one class look alike while classes
differ in shape, colours, pattern, printed name and logo.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import re

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SHAPES = ('box', 'can', 'bottle', 'jar', 'pouch', 'carton')
PATTERNS = ('plain', 'bands', 'diagonal', 'dots', 'split', 'chevron', 'frame')
LOGOS = (
  'circle',
  'star',
  'triangle',
  'diamond',
  'hexagon',
  'ring',
  'square',
  'cross',
)

# (width/height aspect range, relative height range) per shape; bottles are
# tall and narrow, jars short and wide, like on real shelves.
_SHAPE_GEOMETRY = {
  'box': ((0.55, 1.15), (0.70, 1.00)),
  'can': ((0.50, 0.66), (0.55, 0.75)),
  'bottle': ((0.28, 0.40), (0.85, 1.00)),
  'jar': ((0.72, 0.95), (0.50, 0.68)),
  'pouch': ((0.62, 0.85), (0.65, 0.90)),
  'carton': ((0.40, 0.55), (0.80, 1.00)),
}

PRODUCT_WORDS = (
  'cola',
  'chips',
  'soap',
  'tea',
  'coffee',
  'juice',
  'milk',
  'water',
  'beans',
  'soup',
  'rice',
  'pasta',
  'salsa',
  'honey',
  'jam',
  'cereal',
  'oats',
  'cookies',
  'crackers',
  'nuts',
  'candy',
  'mints',
  'shampoo',
  'lotion',
  'detergent',
  'bleach',
  'vinegar',
  'oil',
  'ketchup',
  'mustard',
  'mayo',
  'pickles',
  'olives',
  'tuna',
  'corn',
  'peas',
  'flour',
  'sugar',
  'salt',
  'cocoa',
  'yogurt',
  'butter',
  'wafers',
  'pretzels',
  'popcorn',
  'lemonade',
  'soda',
  'energy',
  'syrup',
  'sauce',
  'noodles',
  'broth',
  'granola',
  'muesli',
  'spread',
  'relish',
  'gravy',
  'dressing',
  'softener',
  'toothpaste',
)
# Variant (flavour / edition / size) names; the class name carries them
# lower-cased with spaces removed, so they must stay file-name safe.
VARIANTS = (
  'ORIGINAL',
  'LIGHT',
  'CLASSIC',
  'EXTRA',
  'ZERO',
  'FRESH',
  'GOLD',
  'MINI',
  'FAMILY',
  'BIO',
  'XL',
  'PLUS',
  'LEMON',
  'CHERRY',
  'MINT',
  'VANILLA',
  'BERRY',
  'ORANGE',
  'APPLE',
  'MANGO',
  'PEACH',
  'SPICY',
  'SALTED',
  'HONEY',
  'LIME',
  'GRAPE',
  'COCONUT',
  'MILD',
  'STRONG',
  'SENSITIVE',
  '500 G',
  '1 L',
  '250 ML',
)
MARKS = (
  'circle',
  'leaf',
  'drop',
  'star',
  'diamond',
  'heart',
  'triangle',
  'ring',
)
_SYLLABLES = (
  'zo',
  'ra',
  'ki',
  'ven',
  'lu',
  'mar',
  'tek',
  'no',
  'ba',
  'fi',
  'xo',
  'del',
  'sun',
  'pri',
  'ma',
  'go',
  'ly',
  'qua',
  'tri',
  'ol',
  'ex',
  'cra',
)

# Dominant package colours, shared by all brands (weights: how common). Many
# unrelated brands are red, white or blue, as in a real supermarket, so the
# dominant colour tells a family only roughly and a variant not at all.
_PALETTE = (
  ((200, 28, 36), 3.0),  # red
  ((238, 238, 232), 2.5),  # white
  ((28, 62, 160), 2.0),  # blue
  ((24, 24, 30), 1.5),  # black
  ((245, 196, 28), 1.5),  # yellow
  ((34, 130, 60), 1.5),  # green
  ((236, 112, 24), 1.0),  # orange
  ((22, 34, 78), 1.0),  # navy
  ((112, 62, 34), 0.8),  # brown
  ((172, 172, 178), 0.7),  # silver
)
FAMILY_SIZES = (3, 6)  # inclusive range of variants per brand family

REFERENCE_HEIGHT = (
  192  # canonical artwork height in pixels (drawn at 2x, downsampled)
)
_SUPERSAMPLE = 2
_NAME_RE = re.compile(r'^[a-z0-9_]+$')


@dataclasses.dataclass(frozen=True)
class ProductSpec:
  """Everything that defines how a product class looks.

  Classes come in brand families (consecutive class ids): the variants of a
  family share shape, base colour, layout, pattern, brand name and logo, and
  differ by the printed variant name, the variant colour (`accent_rgb`: the
  band behind the variant name, a badge, a cap), a small mark and slightly
  in size.
  """

  class_id: int
  name: str  # file-name-safe class name, e.g. 'p017_zora_lemon'
  brand: str  # printed big on the package, shared by the family
  variant: str  # printed smaller, on a band or badge of the variant colour
  shape: str
  aspect: float  # width / height of the package
  height_factor: float  # package height relative to the tallest products
  main_rgb: tuple[int, int, int]  # dominant colour, from the shared palette
  accent_rgb: tuple[int, int, int]  # the variant's own colour
  text_rgb: tuple[int, int, int]
  logo_rgb: tuple[int, int, int]
  part_rgb: tuple[int, int, int]  # cap / lid / bottle body / gable colour
  pattern: str
  pattern_count: int
  logo: str
  vertical_text: bool
  family: int = 0  # brand family id; equal for the variants of one brand
  pattern_rgb: tuple[int, int, int] = (
    255,
    255,
    255,
  )  # the family's pattern colour
  variant_style: str = (
    'band'  # where the variant colour shows: 'band', 'badge' or 'cap'
  )
  mark: str = 'circle'  # the variant's small mark next to the variant name


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
  r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
  return int(r * 255), int(g * 255), int(b * 255)


def _luma(rgb) -> float:
  return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _jitter(rgb, rng, amount: float) -> tuple[int, int, int]:
  return tuple(
    int(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in rgb
  )


@functools.lru_cache(maxsize=64)
def _family_starts(seed: int, upto: int) -> tuple[int, ...]:
  """First class id of every family whose start is <= upto (family sizes depend on the seed only)."""
  starts, k, start = [], 0, 0
  while start <= upto:
    starts.append(start)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xFA51, k])
    start += int(rng.integers(FAMILY_SIZES[0], FAMILY_SIZES[1] + 1))
    k += 1
  return tuple(starts)


def family_of(seed: int, class_id: int) -> tuple[int, int, int]:
  """(family id, index of the class in its family, family size) of `class_id`."""
  # Round up so that neighbouring class ids share one cached partition.
  starts = _family_starts(
    int(seed), (int(class_id) // 256 + 1) * 256 + FAMILY_SIZES[1]
  )
  family = int(np.searchsorted(starts, class_id, side='right')) - 1
  return (
    family,
    int(class_id) - starts[family],
    starts[family + 1] - starts[family],
  )


@dataclasses.dataclass(frozen=True)
class _Family:
  brand: str
  word: str
  shape: str
  aspect: float
  height_factor: float
  main: tuple[int, int, int]
  pattern_rgb: tuple[int, int, int]
  text: tuple[int, int, int]
  logo_rgb: tuple[int, int, int]
  part: tuple[int, int, int]
  pattern: str
  pattern_count: int
  logo: str
  vertical_text: bool
  variant_style: str
  variants: tuple[str, ...]  # variant names, in family order
  accents: tuple[tuple[int, int, int], ...]  # variant colours, in family order
  marks: tuple[str, ...]


@functools.lru_cache(maxsize=1024)
def _family(seed: int, family: int, size: int) -> _Family:
  rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xB4A2, int(family)])
  shape = SHAPES[int(rng.integers(len(SHAPES)))]
  (a_lo, a_hi), (h_lo, h_hi) = _SHAPE_GEOMETRY[shape]
  word = PRODUCT_WORDS[int(rng.integers(len(PRODUCT_WORDS)))]
  brand = ''.join(
    _SYLLABLES[int(i)]
    for i in rng.integers(len(_SYLLABLES), size=int(rng.integers(2, 4)))
  )
  colours = np.array([c for c, _ in _PALETTE])
  weights = np.array([w for _, w in _PALETTE])
  main_index = int(rng.choice(len(_PALETTE), p=weights / weights.sum()))
  main = _jitter(colours[main_index], rng, 10)
  dark = _luma(main) < 140
  # The pattern uses a second palette colour or a tone of the main colour.
  if rng.random() < 0.6:
    others = [i for i in range(len(_PALETTE)) if i != main_index]
    pattern_rgb = _jitter(
      colours[others[int(rng.integers(len(others)))]], rng, 10
    )
  else:
    pattern_rgb = tuple(
      int(np.clip(c * (1.35 if dark else 0.7) + (30 if dark else 0), 0, 255))
      for c in main
    )
  text = (250, 250, 245) if dark else (20, 20, 30)
  if rng.random() < 0.3:
    text = _jitter(colours[int(rng.integers(len(_PALETTE)))], rng, 5)
    if abs(_luma(text) - _luma(main)) < 90:
      text = (250, 250, 245) if dark else (20, 20, 30)
  logo_rgb = _jitter(colours[int(rng.integers(len(_PALETTE)))], rng, 10)
  if np.abs(np.subtract(logo_rgb, main)).sum() < 90:
    logo_rgb = text
  part = _hsv(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.2, 0.95))
  variants = tuple(
    VARIANTS[int(i)]
    for i in rng.choice(len(VARIANTS), size=size, replace=False)
  )
  # Variant colours: well-separated hues, so variants are told apart by a
  # person (and a trained network) although they cover little of the package.
  # Same saturation and brightness, hues apart: the variant is in the hue.
  hue0, step = rng.random(), rng.uniform(0.17, 0.3)
  sat, val = rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.95)
  accents = tuple(
    _hsv(hue0 + k * step + rng.uniform(-0.03, 0.03), sat, val)
    for k in range(size)
  )
  marks = tuple(
    MARKS[int(i)]
    for i in rng.choice(len(MARKS), size=size, replace=size > len(MARKS))
  )
  variant_style = ('band', 'badge', 'cap')[
    int(rng.choice(3, p=[0.5, 0.3, 0.2]))
  ]
  if variant_style == 'cap' and shape not in (
    'bottle',
    'jar',
    'pouch',
    'carton',
  ):
    variant_style = 'band'
  return _Family(
    brand=brand.upper(),
    word=word,
    shape=shape,
    aspect=float(rng.uniform(a_lo, a_hi)),
    height_factor=float(rng.uniform(h_lo, h_hi)),
    main=main,
    pattern_rgb=pattern_rgb,
    text=text,
    logo_rgb=logo_rgb,
    part=part,
    pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
    pattern_count=int(rng.integers(1, 4)),
    logo=LOGOS[int(rng.integers(len(LOGOS)))],
    vertical_text=shape in ('bottle', 'can', 'carton')
    and bool(rng.random() < 0.35),
    variant_style=variant_style,
    variants=variants,
    accents=accents,
    marks=marks,
  )


def make_spec(seed: int, class_id: int) -> ProductSpec:
  """The product class `class_id` of the catalogue `seed` (deterministic).

  Consecutive class ids form brand families of FAMILY_SIZES variants; the
  partition and each family's look depend on the seed only.
  """
  if class_id < 0:
    raise ValueError(f'class_id must be >= 0, got {class_id}')
  family, index, size = family_of(seed, class_id)
  fam = _family(int(seed), family, size)
  rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x9D0C, int(class_id)])
  variant = fam.variants[index]
  # Sizes of one line differ a little (a 1 L bottle next to the 500 ml one).
  aspect = fam.aspect * float(rng.uniform(0.94, 1.06))
  height = float(np.clip(fam.height_factor * rng.uniform(0.9, 1.08), 0.3, 1.0))
  slug = re.sub(r'[^a-z0-9]', '', variant.lower())
  return ProductSpec(
    class_id=int(class_id),
    name=f'p{class_id:03d}_{fam.brand.lower()}_{slug}',
    brand=fam.brand,
    variant=variant,
    shape=fam.shape,
    aspect=aspect,
    height_factor=height,
    main_rgb=fam.main,
    accent_rgb=fam.accents[index],
    text_rgb=fam.text,
    logo_rgb=fam.logo_rgb,
    part_rgb=fam.part,
    pattern=fam.pattern,
    pattern_count=fam.pattern_count,
    logo=fam.logo,
    vertical_text=fam.vertical_text,
    family=family,
    pattern_rgb=fam.pattern_rgb,
    variant_style=fam.variant_style,
    mark=fam.marks[index],
  )


def make_catalogue(
  seed: int, num_classes: int, class_offset: int = 0
) -> list[ProductSpec]:
  """`num_classes` product classes with ids class_offset, class_offset+1, ..."""
  if num_classes < 1:
    raise ValueError(f'num_classes must be >= 1, got {num_classes}')
  specs = [make_spec(seed, class_offset + i) for i in range(num_classes)]
  for spec in specs:
    assert _NAME_RE.match(spec.name), spec.name
  return specs


# ---------------------------------------------------------------- drawing


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
  return ImageFont.load_default(size=max(4, int(size)))


def _text_image(text: str, max_w: int, max_h: int, rgb) -> Image.Image | None:
  """`text` rendered as large as fits in max_w x max_h (RGBA), or None."""
  if max_w < 6 or max_h < 6:
    return None
  size = max_h
  font = _font(size)
  left, top, right, bottom = font.getbbox(text)
  w, h = right - left, bottom - top
  if w > max_w:
    size = int(size * max_w / w)
    font = _font(size)
    left, top, right, bottom = font.getbbox(text)
    w, h = right - left, bottom - top
  if size < 6 or w <= 0 or h <= 0:
    return None
  # A thin outline in the opposite tone keeps the name legible on any pattern.
  stroke = max(1, size // 28)
  outline = (0, 0, 0, 255) if _luma(rgb) > 140 else (255, 255, 255, 255)
  img = Image.new('RGBA', (w + 2 * stroke, h + 2 * stroke), (0, 0, 0, 0))
  ImageDraw.Draw(img).text(
    (stroke - left, stroke - top),
    text,
    font=font,
    fill=tuple(rgb) + (255,),
    stroke_width=stroke,
    stroke_fill=outline,
  )
  return img


def _paste_centered(
  canvas: Image.Image, img: Image.Image | None, cx: float, cy: float
) -> None:
  if img is not None:
    canvas.alpha_composite(
      img, (int(cx - img.width / 2), int(cy - img.height / 2))
    )


def _logo_polygon(kind: str, cx: float, cy: float, r: float):
  if kind == 'star':
    angles = np.arange(10) * np.pi / 5 - np.pi / 2
    radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
  elif kind == 'triangle':
    angles, radii = np.arange(3) * 2 * np.pi / 3 - np.pi / 2, np.full(3, r)
  elif kind == 'diamond':
    angles, radii = np.arange(4) * np.pi / 2, np.full(4, r)
  elif kind == 'hexagon':
    angles, radii = np.arange(6) * np.pi / 3, np.full(6, r)
  elif kind == 'square':
    angles, radii = np.arange(4) * np.pi / 2 + np.pi / 4, np.full(4, r)
  else:
    return None
  return [
    (cx + rr * np.cos(a), cy + rr * np.sin(a)) for a, rr in zip(angles, radii)
  ]


def _draw_logo(
  draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, rgb, bg
) -> None:
  if kind == 'circle':
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    draw.ellipse(
      [cx - r * 0.45, cy - r * 0.45, cx + r * 0.45, cy + r * 0.45], fill=bg
    )
  elif kind == 'ring':
    draw.ellipse(
      [cx - r, cy - r, cx + r, cy + r], outline=rgb, width=max(2, int(r * 0.3))
    )
  elif kind == 'cross':
    t = r * 0.35
    draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=rgb)
    draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=rgb)
  else:
    draw.polygon(_logo_polygon(kind, cx, cy, r), fill=rgb)


def _draw_mark(
  draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, rgb
) -> None:
  """A variant's small mark (flavour icon) of radius ~r."""
  if kind == 'leaf':
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    pts = (
      np.stack([0.5 * np.sin(t) * np.abs(np.sin(t / 2)) ** 0.2, -np.cos(t)], 1)
      * r
    )
    c, s = np.cos(0.6), np.sin(0.6)
    draw.polygon(
      [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts], fill=rgb
    )
  elif kind == 'drop':
    draw.ellipse([cx - r * 0.7, cy - r * 0.2, cx + r * 0.7, cy + r], fill=rgb)
    draw.polygon(
      [
        (cx, cy - r),
        (cx - r * 0.62, cy + r * 0.15),
        (cx + r * 0.62, cy + r * 0.15),
      ],
      fill=rgb,
    )
  elif kind == 'heart':
    draw.ellipse([cx - r, cy - r * 0.8, cx, cy + r * 0.2], fill=rgb)
    draw.ellipse([cx, cy - r * 0.8, cx + r, cy + r * 0.2], fill=rgb)
    draw.polygon(
      [
        (cx - r * 0.97, cy - r * 0.15),
        (cx + r * 0.97, cy - r * 0.15),
        (cx, cy + r),
      ],
      fill=rgb,
    )
  elif kind == 'circle':
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
  elif kind == 'ring':
    draw.ellipse(
      [cx - r, cy - r, cx + r, cy + r], outline=rgb, width=max(2, int(r * 0.35))
    )
  else:
    draw.polygon(_logo_polygon(kind, cx, cy, r), fill=rgb)


def _contrast(rgb) -> tuple[int, int, int]:
  return (20, 20, 30) if _luma(rgb) > 150 else (250, 250, 245)


def _draw_label(canvas: Image.Image, rect, spec: ProductSpec) -> None:
  """The printed face of the package in rect: family background, pattern, logo
  and brand name, then the variant's name, colour and mark."""
  x0, y0, x1, y1 = rect
  w, h = x1 - x0, y1 - y0
  draw = ImageDraw.Draw(canvas)
  draw.rectangle(rect, fill=spec.main_rgb)
  acc, n = spec.pattern_rgb, spec.pattern_count
  if spec.pattern == 'bands':
    for k in range(n):
      yc = y0 + h * (0.18 + 0.5 * (k + 0.5) / n)
      draw.rectangle([x0, yc - h * 0.03, x1, yc + h * 0.03], fill=acc)
  elif spec.pattern == 'diagonal':
    step = w / (1.5 + n)
    for k in range(-int(h / step) - 2, int(w / step) + 2):
      xs = x0 + k * step * 2
      draw.polygon(
        [(xs, y1), (xs + step, y1), (xs + step + h, y0), (xs + h, y0)], fill=acc
      )
  elif spec.pattern == 'dots':
    r = w / (6 + 2 * n)
    for iy, yy in enumerate(np.arange(y0 + r, y1, 3 * r)):
      for xx in np.arange(x0 + r + (iy % 2) * 1.5 * r, x1, 3 * r):
        draw.ellipse([xx - r / 2, yy - r / 2, xx + r / 2, yy + r / 2], fill=acc)
  elif spec.pattern == 'split':
    frac = (0.35, 0.5, 0.62)[n - 1]
    draw.rectangle([x0, y0 + h * frac, x1, y1], fill=acc)
  elif spec.pattern == 'chevron':
    t = h * 0.06
    for k in range(n):
      yc = y0 + h * (0.5 + 0.1 * k)
      draw.line(
        [(x0, yc - w * 0.3), (x0 + w / 2, yc), (x1, yc - w * 0.3)],
        fill=acc,
        width=int(t),
      )
  elif spec.pattern == 'frame':
    t = max(2, int(min(w, h) * 0.04 * n))
    draw.rectangle(rect, outline=acc, width=t)
  var_rgb = spec.accent_rgb
  style = spec.variant_style
  if spec.vertical_text:
    # Names run bottom-to-top along the tall, narrow face; logo on top.
    name = _text_image(spec.brand, int(h * 0.6), int(w * 0.5), spec.text_rgb)
    if name is not None:
      _paste_centered(
        canvas, name.rotate(90, expand=True), x0 + w * 0.38, y0 + h * 0.58
      )
    vx = x0 + w * 0.8
    if (
      style == 'band'
    ):  # a vertical strip of the variant colour carries the variant name
      draw.rectangle(
        [x0 + w * 0.68, y0 + h * 0.36, x0 + w * 0.92, y1 - h * 0.12],
        fill=var_rgb,
      )
      vt = _contrast(var_rgb)
    else:
      vt = spec.text_rgb
    var = _text_image(spec.variant, int(h * 0.5), int(w * 0.2), vt)
    if var is not None:
      _paste_centered(canvas, var.rotate(90, expand=True), vx, y0 + h * 0.62)
    r = min(w * 0.3, h * 0.1)
    _draw_logo(
      draw,
      spec.logo,
      x0 + w / 2,
      y0 + h * 0.13,
      r,
      spec.logo_rgb,
      spec.main_rgb,
    )
    mr = min(w * 0.16, h * 0.05)
    if style == 'badge':
      draw.ellipse(
        [
          vx - mr * 1.5,
          y0 + h * 0.27 - mr * 1.5,
          vx + mr * 1.5,
          y0 + h * 0.27 + mr * 1.5,
        ],
        fill=var_rgb,
      )
      _draw_mark(draw, spec.mark, vx, y0 + h * 0.27, mr, _contrast(var_rgb))
    else:
      _draw_mark(
        draw,
        spec.mark,
        vx,
        y0 + h * 0.3,
        mr,
        var_rgb if style == 'cap' else _contrast(var_rgb),
      )
  else:
    r = min(w * 0.2, h * 0.12)
    _draw_logo(
      draw,
      spec.logo,
      x0 + w / 2,
      y0 + h * 0.06 + r,
      r,
      spec.logo_rgb,
      spec.main_rgb,
    )
    name = _text_image(spec.brand, int(w * 0.86), int(h * 0.16), spec.text_rgb)
    _paste_centered(canvas, name, x0 + w / 2, y0 + h * 0.47)
    band_top, band_bottom = y0 + h * 0.74, y0 + h * 0.85
    mr = min(w * 0.08, h * 0.05)
    if (
      style == 'band'
    ):  # the variant name on a tab of the variant colour, a stripe of it below
      draw.rectangle(
        [x0 + w * 0.2, band_top, x0 + w * 0.8, band_bottom], fill=var_rgb
      )
      draw.rectangle(
        [x0, band_bottom + h * 0.03, x1, band_bottom + h * 0.05], fill=var_rgb
      )
      vt = _contrast(var_rgb)
      var = _text_image(spec.variant, int(w * 0.46), int(h * 0.08), vt)
      _paste_centered(canvas, var, x0 + w * 0.5, (band_top + band_bottom) / 2)
      _draw_mark(
        draw, spec.mark, x0 + w * 0.1, (band_top + band_bottom) / 2, mr, var_rgb
      )
    else:
      # A badge of the variant colour holding its mark (style 'badge'), or a
      # mark in the variant colour next to the variant name (style 'cap',
      # where the cap / lid / seal shows the colour).
      bx, by = x0 + w * 0.8, y0 + h * 0.66
      if style == 'badge':
        br = min(w * 0.12, h * 0.08)
        draw.ellipse(
          [bx - br, by - br, bx + br, by + br],
          fill=var_rgb,
          outline=spec.text_rgb,
          width=max(1, int(br * 0.1)),
        )
        _draw_mark(draw, spec.mark, bx, by, br * 0.55, _contrast(var_rgb))
      else:
        _draw_mark(draw, spec.mark, bx, by, mr * 1.2, var_rgb)
      var = _text_image(
        spec.variant, int(w * 0.7), int(h * 0.09), spec.text_rgb
      )
      _paste_centered(
        canvas, var, x0 + w * 0.45, (band_top + band_bottom) / 2 + h * 0.02
      )


def _cylinder_shading(width: int, strength: float) -> np.ndarray:
  """Horizontal brightness profile of a lit cylinder (bright left of centre, dark rims)."""
  u = (np.arange(width) + 0.5) / width * 2 - 1
  prof = np.sqrt(np.clip(1 - u**2, 0, 1)) * (1 - strength) + strength
  spec = 0.35 * np.exp(-(((u + 0.35) / 0.12) ** 2))  # specular highlight
  return (0.55 + 0.5 * prof + spec)[None, :, None]


def _turn_label(
  canvas: Image.Image, y0: int, y1: int, turn: float
) -> Image.Image:
  """A cylinder's label rows y0..y1 rotated by `turn` of the width (the print repeats around it)."""
  shift = int(round(turn * canvas.width))
  if shift == 0:
    return canvas
  arr = np.array(canvas)
  arr[y0 : y1 + 1] = np.roll(arr[y0 : y1 + 1], shift, axis=1)
  return Image.fromarray(arr, 'RGBA')


def draw_product(
  spec: ProductSpec, height: int = REFERENCE_HEIGHT, turn: float = 0.0
) -> Image.Image:
  """Canonical RGBA artwork of `spec`, `height` pixels tall, transparent outside.

  `turn`: for cans, bottles and jars, how far the package is rotated about
  its axis (fraction of the width the label moves; 0 faces the camera).
  """
  return _finish(*_draw_unshaded(spec, height), turn)


def _finish(img: Image.Image, label_rows, shade, turn: float) -> Image.Image:
  """Turns the label of a round package, then shades it like a lit cylinder."""
  if turn and label_rows is not None:
    img = _turn_label(img, *label_rows, turn)
  if shade is not None:
    arr = np.asarray(img).astype(np.float32)
    arr[..., :3] = np.clip(
      arr[..., :3] * _cylinder_shading(img.width, shade), 0, 255
    )
    img = Image.fromarray(arr.astype(np.uint8), 'RGBA')
  return img


def _draw_unshaded(spec: ProductSpec, height: int):
  """(RGBA artwork `height` tall before shading, label rows of a round package or None, shading strength or None)."""
  s = _SUPERSAMPLE
  label_rows = None
  H = height * s
  W = max(4, int(round(height * spec.aspect)) * s)
  canvas = Image.new('RGBA', (W, H), (0, 0, 0, 0))
  draw = ImageDraw.Draw(canvas)
  shade = None
  cap_rgb = spec.accent_rgb if spec.variant_style == 'cap' else spec.pattern_rgb
  if spec.shape == 'box':
    _draw_label(canvas, (0, 0, W - 1, H - 1), spec)
    draw.rectangle(
      [0, 0, W - 1, int(H * 0.025)],
      fill=tuple(min(255, c + 50) for c in spec.main_rgb),
    )
    draw.rectangle(
      [int(W * 0.93), 0, W - 1, H - 1],
      fill=tuple(int(c * 0.6) for c in spec.main_rgb),
    )
  elif spec.shape == 'carton':
    gable = int(H * 0.16)
    _draw_label(canvas, (0, gable, W - 1, H - 1), spec)
    gable_rgb = cap_rgb if spec.variant_style == 'cap' else spec.part_rgb
    draw.polygon(
      [
        (0, gable),
        (W * 0.15, gable * 0.25),
        (W * 0.85, gable * 0.25),
        (W - 1, gable),
      ],
      fill=gable_rgb,
    )
    draw.rectangle([W * 0.12, 0, W * 0.88, gable * 0.3], fill=gable_rgb)
  elif spec.shape == 'can':
    e = int(W * 0.12)  # half-height of the elliptic ends
    _draw_label(canvas, (0, e, W - 1, H - 1 - e), spec)
    label_rows = (e + s, H - 1 - e - s)
    mask = Image.new('L', (W, H), 0)
    md = ImageDraw.Draw(mask)
    md.rectangle([0, e, W - 1, H - 1 - e], fill=255)
    md.ellipse([0, H - 1 - 2 * e, W - 1, H - 1], fill=255)
    md.ellipse([0, 0, W - 1, 2 * e], fill=255)
    body = canvas.copy()
    canvas = Image.new('RGBA', (W, H), (0, 0, 0, 0))
    canvas.paste(body, (0, 0), mask)
    draw = ImageDraw.Draw(canvas)
    draw.ellipse([0, H - 1 - 2 * e, W - 1, H - 1], fill=(150, 150, 155))
    draw.rectangle([0, H - 1 - 2 * e, W - 1, H - 1 - e], fill=(150, 150, 155))
    draw.ellipse(
      [0, 0, W - 1, 2 * e],
      fill=(205, 205, 210),
      outline=(120, 120, 125),
      width=s * 2,
    )
    draw.ellipse(
      [W * 0.1, e * 0.3, W * 0.9, e * 1.7], outline=(150, 150, 155), width=s * 2
    )
    shade = 0.25
  elif spec.shape == 'bottle':
    cap_h, neck_h, shoulder_h = int(H * 0.08), int(H * 0.12), int(H * 0.12)
    neck_w = W * 0.38
    body_top = cap_h + neck_h + shoulder_h
    liquid = spec.part_rgb
    draw.rounded_rectangle(
      [0, body_top - shoulder_h, W - 1, H - 1], radius=W * 0.18, fill=liquid
    )
    draw.polygon(
      [
        ((W - neck_w) / 2, cap_h + neck_h),
        ((W + neck_w) / 2, cap_h + neck_h),
        (W - 1, body_top),
        (0, body_top),
      ],
      fill=liquid,
    )
    draw.rectangle(
      [(W - neck_w) / 2, cap_h - 1, (W + neck_w) / 2, cap_h + neck_h + 1],
      fill=liquid,
    )
    cap_w = neck_w * 1.15
    draw.rounded_rectangle(
      [(W - cap_w) / 2, 0, (W + cap_w) / 2, cap_h],
      radius=cap_h * 0.2,
      fill=cap_rgb,
    )
    _draw_label(canvas, (0, int(H * 0.42), W - 1, int(H * 0.86)), spec)
    label_rows = (int(H * 0.42) + s, int(H * 0.86) - s)
    shade = 0.35
  elif spec.shape == 'jar':
    lid_h = int(H * 0.16)
    draw.rounded_rectangle(
      [0, lid_h - 2, W - 1, H - 1], radius=W * 0.08, fill=spec.part_rgb
    )
    lid_w = W * 0.86
    draw.rectangle([(W - lid_w) / 2, 0, (W + lid_w) / 2, lid_h], fill=cap_rgb)
    for k in range(1, 9):  # lid ridges
      x = (W - lid_w) / 2 + lid_w * k / 9
      draw.line(
        [(x, 0), (x, lid_h)], fill=tuple(int(c * 0.7) for c in cap_rgb), width=s
      )
    _draw_label(canvas, (0, int(H * 0.3), W - 1, int(H * 0.9)), spec)
    label_rows = (int(H * 0.3) + s, int(H * 0.9) - s)
    shade = 0.45
  elif spec.shape == 'pouch':
    seal = int(H * 0.07)
    _draw_label(canvas, (0, seal, W - 1, H - 1), spec)
    mask = Image.new('L', (W, H), 0)
    md = ImageDraw.Draw(mask)
    teeth = 12
    top = [
      (W * k / teeth, seal * (0.3 if k % 2 else 0.0)) for k in range(teeth + 1)
    ]
    md.polygon(
      top
      + [
        (W - 1, H * 0.85),
        (W * 0.94, H - 1),
        (W * 0.06, H - 1),
        (0, H * 0.85),
      ],
      fill=255,
    )
    ImageDraw.Draw(canvas).rectangle([0, 0, W - 1, seal], fill=cap_rgb)
    body, canvas = canvas, Image.new('RGBA', (W, H), (0, 0, 0, 0))
    canvas.paste(body, (0, 0), mask)
    shade = 0.7
  else:
    raise ValueError(f'unknown shape {spec.shape!r}')
  if label_rows is not None:
    label_rows = (label_rows[0] // s, label_rows[1] // s)
  return canvas.resize((W // s, height), Image.LANCZOS), label_rows, shade


TURNS = (
  -0.3,
  -0.2,
  -0.1,
  0.0,
  0.1,
  0.2,
  0.3,
)  # label rotations of round packages on photos
_ROUND_SHAPES = ('can', 'bottle', 'jar')


@functools.lru_cache(maxsize=4096)
def _unshaded_reference(spec: ProductSpec):
  return _draw_unshaded(spec, REFERENCE_HEIGHT)


@functools.lru_cache(maxsize=8192)
def canonical_image(spec: ProductSpec, turn: float = 0.0) -> Image.Image:
  """Cached canonical artwork of `spec` at REFERENCE_HEIGHT (label turned by `turn`)."""
  return _finish(*_unshaded_reference(spec), turn)


@functools.lru_cache(maxsize=8192)
def _pyramid(spec: ProductSpec, turn: float = 0.0) -> tuple[Image.Image, ...]:
  """Canonical artwork at REFERENCE_HEIGHT, 1/2, 1/4, ...: small instances resize from a small level."""
  levels = [canonical_image(spec, turn)]
  while levels[-1].height >= 48 and levels[-1].width >= 8:
    prev = levels[-1]
    levels.append(
      prev.resize((prev.width // 2, prev.height // 2), Image.BOX)
    )  # premultiplied alpha
  return tuple(levels)


def render_instance(
  spec: ProductSpec, width: int, height: int, rng: np.random.Generator
) -> Image.Image:
  """One photographed instance of `spec`: about width x height, RGBA.

  Varies the turn of round packages (the label moves around the can),
  perspective/rotation, lighting (brightness, colour cast, gradient) and
  blur; geometry never grows the image beyond ~8% of the request.
  """
  if width < 2 or height < 2:
    raise ValueError(f'instance size must be >= 2x2, got {width}x{height}')
  turn = 0.0
  if spec.shape in _ROUND_SHAPES:
    turn = TURNS[int(np.clip(np.round(rng.normal(0, 1.6)), -3, 3)) + 3]
  levels = _pyramid(spec, turn)
  base = levels[0]
  for level in levels[
    1:
  ]:  # the smallest level still at least as tall as the instance
    if level.height < height:
      break
    base = level
  # Resize with some margin, then warp: a slight rotation about the centre
  # plus a perspective tilt (one side farther away, so a bit shorter).
  img = base.resize(
    (width, height), Image.BILINEAR if height < base.height else Image.BICUBIC
  )
  pad = max(1, int(0.04 * max(width, height)))
  padded = Image.new('RGBA', (width + 2 * pad, height + 2 * pad), (0, 0, 0, 0))
  padded.paste(img, (pad, pad))
  tilt = rng.uniform(-0.07, 0.07) * height
  angle = np.deg2rad(rng.normal(0, 1.6))
  cx, cy = padded.width / 2, padded.height / 2
  corners = np.array(
    [
      [pad, pad],
      [pad + width, pad + tilt / 2],
      [pad + width, pad + height - tilt / 2],
      [pad, pad + height],
    ],
    dtype=np.float64,
  )
  if tilt < 0:  # left side farther away instead
    corners = np.array(
      [
        [pad, pad - tilt / 2],
        [pad + width, pad],
        [pad + width, pad + height],
        [pad, pad + height + tilt / 2],
      ],
      dtype=np.float64,
    )
  rot = np.array(
    [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
  )
  dst = (corners - [cx, cy]) @ rot.T + [cx, cy]
  src = np.array(
    [
      [pad, pad],
      [pad + width, pad],
      [pad + width, pad + height],
      [pad, pad + height],
    ],
    dtype=np.float64,
  )
  coeffs = _perspective_coeffs(dst, src)
  img = padded.transform(padded.size, Image.PERSPECTIVE, coeffs, Image.BILINEAR)
  arr = np.asarray(img).astype(np.float32)
  h, w = arr.shape[:2]
  # Lighting: overall brightness, colour cast and a linear gradient.
  gain = rng.uniform(0.72, 1.12) * (1 + rng.uniform(-0.08, 0.08, size=3))
  gx, gy = rng.uniform(-0.18, 0.18, size=2)
  xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
  yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
  field = 1 + gx * xx + gy * yy
  arr[..., :3] = np.clip(
    arr[..., :3] * gain.astype(np.float32) * field[..., None], 0, 255
  )
  img = Image.fromarray(arr.astype(np.uint8), 'RGBA')
  if rng.random() < 0.35:
    img = img.filter(
      ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * max(1.0, height / 120))
    )
  return img


def _perspective_coeffs(dst: np.ndarray, src: np.ndarray) -> tuple[float, ...]:
  """PIL PERSPECTIVE coefficients mapping output points `dst` to input points `src`."""
  a = []
  b = []
  for (x, y), (u, v) in zip(dst, src):
    a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
    a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b.extend([u, v])
  return tuple(np.linalg.solve(np.asarray(a), np.asarray(b)).tolist())
