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
LOGOS = ('circle', 'star', 'triangle', 'diamond', 'hexagon', 'ring', 'square', 'cross')

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
    'cola', 'chips', 'soap', 'tea', 'coffee', 'juice', 'milk', 'water', 'beans',
    'soup', 'rice', 'pasta', 'salsa', 'honey', 'jam', 'cereal', 'oats', 'cookies',
    'crackers', 'nuts', 'candy', 'mints', 'shampoo', 'lotion', 'detergent',
    'bleach', 'vinegar', 'oil', 'ketchup', 'mustard', 'mayo', 'pickles', 'olives',
    'tuna', 'corn', 'peas', 'flour', 'sugar', 'salt', 'cocoa', 'yogurt', 'butter',
    'wafers', 'pretzels', 'popcorn', 'lemonade', 'soda', 'energy', 'syrup',
    'sauce', 'noodles', 'broth', 'granola', 'muesli', 'spread', 'relish',
    'gravy', 'dressing', 'softener', 'toothpaste',
)
VARIANTS = ('ORIGINAL', 'LIGHT', 'CLASSIC', 'EXTRA', 'ZERO', 'FRESH', 'GOLD',
            'MINI', 'FAMILY', 'BIO', '500 g', '1 L', '250 ml', 'XL', 'PLUS')
_SYLLABLES = ('zo', 'ra', 'ki', 'ven', 'lu', 'mar', 'tek', 'no', 'ba', 'fi', 'xo',
              'del', 'sun', 'pri', 'ma', 'go', 'ly', 'qua', 'tri', 'ol', 'ex', 'cra')

REFERENCE_HEIGHT = 192  # canonical artwork height in pixels (drawn at 2x, downsampled)
_SUPERSAMPLE = 2
_NAME_RE = re.compile(r'^[a-z0-9_]+$')


@dataclasses.dataclass(frozen=True)
class ProductSpec:
  """Everything that defines how a product class looks."""

  class_id: int
  name: str  # file-name-safe class name, e.g. 'p017_cola'
  brand: str  # printed big on the package
  variant: str  # printed small
  shape: str
  aspect: float  # width / height of the package
  height_factor: float  # package height relative to the tallest products
  main_rgb: tuple[int, int, int]
  accent_rgb: tuple[int, int, int]
  text_rgb: tuple[int, int, int]
  logo_rgb: tuple[int, int, int]
  part_rgb: tuple[int, int, int]  # cap / lid / bottle body / gable colour
  pattern: str
  pattern_count: int
  logo: str
  vertical_text: bool


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
  r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
  return int(r * 255), int(g * 255), int(b * 255)


def _luma(rgb) -> float:
  return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def make_spec(seed: int, class_id: int) -> ProductSpec:
  """The product class `class_id` of the family `seed` (deterministic)."""
  if class_id < 0:
    raise ValueError(f'class_id must be >= 0, got {class_id}')
  rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x9D0C, int(class_id)])
  shape = SHAPES[int(rng.integers(len(SHAPES)))]
  (a_lo, a_hi), (h_lo, h_hi) = _SHAPE_GEOMETRY[shape]
  word = PRODUCT_WORDS[int(rng.integers(len(PRODUCT_WORDS)))]
  brand = ''.join(_SYLLABLES[int(i)] for i in rng.integers(len(_SYLLABLES), size=int(rng.integers(2, 4))))
  hue = float(rng.random())
  main = _hsv(hue, rng.uniform(0.45, 1.0), rng.uniform(0.35, 0.98))
  if rng.random() < 0.12:  # some packages are white or black
    main = _hsv(hue, 0.05, 0.97) if rng.random() < 0.5 else _hsv(hue, 0.1, 0.12)
  accent = _hsv(hue + rng.uniform(0.25, 0.75), rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0))
  text = (250, 250, 245) if _luma(main) < 140 else (20, 20, 30)
  if rng.random() < 0.3:
    text = _hsv(hue + 0.5, 0.9, 0.35 if _luma(main) >= 140 else 1.0)
  logo = _hsv(hue + rng.uniform(0.3, 0.7), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
  part = _hsv(rng.random(), rng.uniform(0.0, 0.9), rng.uniform(0.2, 0.95))
  return ProductSpec(
      class_id=int(class_id),
      name=f'p{class_id:03d}_{word}',
      brand=brand.upper(),
      variant=VARIANTS[int(rng.integers(len(VARIANTS)))] + ' ' + word.upper(),
      shape=shape,
      aspect=float(rng.uniform(a_lo, a_hi)),
      height_factor=float(rng.uniform(h_lo, h_hi)),
      main_rgb=main,
      accent_rgb=accent,
      text_rgb=text,
      logo_rgb=logo,
      part_rgb=part,
      pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
      pattern_count=int(rng.integers(1, 4)),
      logo=LOGOS[int(rng.integers(len(LOGOS)))],
      vertical_text=shape in ('bottle', 'can', 'carton') and bool(rng.random() < 0.35),
  )


def make_catalogue(seed: int, num_classes: int, class_offset: int = 0) -> list[ProductSpec]:
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
  ImageDraw.Draw(img).text((stroke - left, stroke - top), text, font=font, fill=tuple(rgb) + (255,),
                           stroke_width=stroke, stroke_fill=outline)
  return img


def _paste_centered(canvas: Image.Image, img: Image.Image | None, cx: float, cy: float) -> None:
  if img is not None:
    canvas.alpha_composite(img, (int(cx - img.width / 2), int(cy - img.height / 2)))


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
  return [(cx + rr * np.cos(a), cy + rr * np.sin(a)) for a, rr in zip(angles, radii)]


def _draw_logo(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, rgb, bg) -> None:
  if kind == 'circle':
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    draw.ellipse([cx - r * 0.45, cy - r * 0.45, cx + r * 0.45, cy + r * 0.45], fill=bg)
  elif kind == 'ring':
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=rgb, width=max(2, int(r * 0.3)))
  elif kind == 'cross':
    t = r * 0.35
    draw.rectangle([cx - r, cy - t, cx + r, cy + t], fill=rgb)
    draw.rectangle([cx - t, cy - r, cx + t, cy + r], fill=rgb)
  else:
    draw.polygon(_logo_polygon(kind, cx, cy, r), fill=rgb)


def _draw_label(canvas: Image.Image, rect, spec: ProductSpec) -> None:
  """The printed face of the package (background, pattern, logo, text) in rect."""
  x0, y0, x1, y1 = rect
  w, h = x1 - x0, y1 - y0
  draw = ImageDraw.Draw(canvas)
  draw.rectangle(rect, fill=spec.main_rgb)
  acc, n = spec.accent_rgb, spec.pattern_count
  if spec.pattern == 'bands':
    for k in range(n):
      yc = y0 + h * (0.18 + 0.7 * (k + 0.5) / n)
      draw.rectangle([x0, yc - h * 0.035, x1, yc + h * 0.035], fill=acc)
  elif spec.pattern == 'diagonal':
    step = w / (1.5 + n)
    for k in range(-int(h / step) - 2, int(w / step) + 2):
      xs = x0 + k * step * 2
      draw.polygon([(xs, y1), (xs + step, y1), (xs + step + h, y0), (xs + h, y0)], fill=acc)
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
      yc = y0 + h * (0.55 + 0.12 * k)
      draw.line([(x0, yc - w * 0.3), (x0 + w / 2, yc), (x1, yc - w * 0.3)], fill=acc, width=int(t))
  elif spec.pattern == 'frame':
    t = max(2, int(min(w, h) * 0.04 * n))
    draw.rectangle(rect, outline=acc, width=t)
  bg = spec.accent_rgb if spec.pattern == 'split' else spec.main_rgb
  if spec.vertical_text:
    # Name runs bottom-to-top along the tall, narrow face; logo on top.
    name = _text_image(spec.brand, int(h * 0.62), int(w * 0.55), spec.text_rgb)
    if name is not None:
      _paste_centered(canvas, name.rotate(90, expand=True), x0 + w * 0.42, y0 + h * 0.58)
    var = _text_image(spec.variant, int(h * 0.55), int(w * 0.2), spec.text_rgb)
    if var is not None:
      _paste_centered(canvas, var.rotate(90, expand=True), x0 + w * 0.82, y0 + h * 0.58)
    r = min(w * 0.3, h * 0.1)
    _draw_logo(draw, spec.logo, x0 + w / 2, y0 + h * 0.14, r, spec.logo_rgb, spec.main_rgb)
  else:
    r = min(w * 0.2, h * 0.13)
    _draw_logo(draw, spec.logo, x0 + w / 2, y0 + h * 0.08 + r, r, spec.logo_rgb, spec.main_rgb)
    name = _text_image(spec.brand, int(w * 0.86), int(h * 0.16), spec.text_rgb)
    _paste_centered(canvas, name, x0 + w / 2, y0 + h * 0.47)
    var = _text_image(spec.variant, int(w * 0.8), int(h * 0.07), spec.text_rgb if bg == spec.main_rgb else (255, 255, 255))
    _paste_centered(canvas, var, x0 + w / 2, y0 + h * 0.84)


def _cylinder_shading(width: int, strength: float) -> np.ndarray:
  """Horizontal brightness profile of a lit cylinder (bright left of centre, dark rims)."""
  u = (np.arange(width) + 0.5) / width * 2 - 1
  prof = np.sqrt(np.clip(1 - u ** 2, 0, 1)) * (1 - strength) + strength
  spec = 0.35 * np.exp(-((u + 0.35) / 0.12) ** 2)  # specular highlight
  return (0.55 + 0.5 * prof + spec)[None, :, None]


def draw_product(spec: ProductSpec, height: int = REFERENCE_HEIGHT) -> Image.Image:
  """Canonical RGBA artwork of `spec`, `height` pixels tall, transparent outside."""
  s = _SUPERSAMPLE
  H = height * s
  W = max(4, int(round(height * spec.aspect)) * s)
  canvas = Image.new('RGBA', (W, H), (0, 0, 0, 0))
  draw = ImageDraw.Draw(canvas)
  shade = None
  if spec.shape == 'box':
    _draw_label(canvas, (0, 0, W - 1, H - 1), spec)
    draw.rectangle([0, 0, W - 1, int(H * 0.025)], fill=tuple(min(255, c + 50) for c in spec.main_rgb))
    draw.rectangle([int(W * 0.93), 0, W - 1, H - 1], fill=tuple(int(c * 0.6) for c in spec.main_rgb))
  elif spec.shape == 'carton':
    gable = int(H * 0.16)
    _draw_label(canvas, (0, gable, W - 1, H - 1), spec)
    draw.polygon([(0, gable), (W * 0.15, gable * 0.25), (W * 0.85, gable * 0.25), (W - 1, gable)], fill=spec.part_rgb)
    draw.rectangle([W * 0.12, 0, W * 0.88, gable * 0.3], fill=spec.part_rgb)
  elif spec.shape == 'can':
    e = int(W * 0.12)  # half-height of the elliptic ends
    _draw_label(canvas, (0, e, W - 1, H - 1 - e), spec)
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
    draw.ellipse([0, 0, W - 1, 2 * e], fill=(205, 205, 210), outline=(120, 120, 125), width=s * 2)
    draw.ellipse([W * 0.1, e * 0.3, W * 0.9, e * 1.7], outline=(150, 150, 155), width=s * 2)
    shade = 0.25
  elif spec.shape == 'bottle':
    cap_h, neck_h, shoulder_h = int(H * 0.08), int(H * 0.12), int(H * 0.12)
    neck_w = W * 0.38
    body_top = cap_h + neck_h + shoulder_h
    liquid = spec.part_rgb
    draw.rounded_rectangle([0, body_top - shoulder_h, W - 1, H - 1], radius=W * 0.18, fill=liquid)
    draw.polygon([((W - neck_w) / 2, cap_h + neck_h), ((W + neck_w) / 2, cap_h + neck_h),
                  (W - 1, body_top), (0, body_top)], fill=liquid)
    draw.rectangle([(W - neck_w) / 2, cap_h - 1, (W + neck_w) / 2, cap_h + neck_h + 1], fill=liquid)
    cap_w = neck_w * 1.15
    draw.rounded_rectangle([(W - cap_w) / 2, 0, (W + cap_w) / 2, cap_h], radius=cap_h * 0.2, fill=spec.accent_rgb)
    _draw_label(canvas, (0, int(H * 0.42), W - 1, int(H * 0.86)), spec)
    shade = 0.35
  elif spec.shape == 'jar':
    lid_h = int(H * 0.16)
    draw.rounded_rectangle([0, lid_h - 2, W - 1, H - 1], radius=W * 0.08, fill=spec.part_rgb)
    lid_w = W * 0.86
    draw.rectangle([(W - lid_w) / 2, 0, (W + lid_w) / 2, lid_h], fill=spec.accent_rgb)
    for k in range(1, 9):  # lid ridges
      x = (W - lid_w) / 2 + lid_w * k / 9
      draw.line([(x, 0), (x, lid_h)], fill=tuple(int(c * 0.7) for c in spec.accent_rgb), width=s)
    _draw_label(canvas, (0, int(H * 0.3), W - 1, int(H * 0.9)), spec)
    shade = 0.45
  elif spec.shape == 'pouch':
    seal = int(H * 0.07)
    _draw_label(canvas, (0, seal, W - 1, H - 1), spec)
    mask = Image.new('L', (W, H), 0)
    md = ImageDraw.Draw(mask)
    teeth = 12
    top = [(W * k / teeth, seal * (0.3 if k % 2 else 0.0)) for k in range(teeth + 1)]
    md.polygon(top + [(W - 1, H * 0.85), (W * 0.94, H - 1), (W * 0.06, H - 1), (0, H * 0.85)], fill=255)
    ImageDraw.Draw(canvas).rectangle([0, 0, W - 1, seal], fill=spec.accent_rgb)
    body, canvas = canvas, Image.new('RGBA', (W, H), (0, 0, 0, 0))
    canvas.paste(body, (0, 0), mask)
    shade = 0.7
  else:
    raise ValueError(f'unknown shape {spec.shape!r}')
  if shade is not None:
    arr = np.asarray(canvas).astype(np.float32)
    arr[..., :3] = np.clip(arr[..., :3] * _cylinder_shading(W, shade), 0, 255)
    canvas = Image.fromarray(arr.astype(np.uint8), 'RGBA')
  return canvas.resize((W // s, height), Image.LANCZOS)


@functools.lru_cache(maxsize=4096)
def canonical_image(spec: ProductSpec) -> Image.Image:
  """Cached canonical artwork of `spec` at REFERENCE_HEIGHT."""
  return draw_product(spec, REFERENCE_HEIGHT)


@functools.lru_cache(maxsize=4096)
def _pyramid(spec: ProductSpec) -> tuple[Image.Image, ...]:
  """Canonical artwork at REFERENCE_HEIGHT, 1/2, 1/4, ...: small instances resize from a small level."""
  levels = [canonical_image(spec)]
  while levels[-1].height >= 48 and levels[-1].width >= 8:
    prev = levels[-1]
    levels.append(prev.resize((prev.width // 2, prev.height // 2), Image.BOX))  # premultiplied alpha
  return tuple(levels)


def render_instance(spec: ProductSpec, width: int, height: int, rng: np.random.Generator) -> Image.Image:
  """One photographed instance of `spec`: about width x height, RGBA.

  Varies perspective/rotation, lighting (brightness, colour cast, gradient)
  and blur; geometry never grows the image beyond ~8% of the request.
  """
  if width < 2 or height < 2:
    raise ValueError(f'instance size must be >= 2x2, got {width}x{height}')
  levels = _pyramid(spec)
  base = levels[0]
  for level in levels[1:]:  # the smallest level still at least as tall as the instance
    if level.height < height:
      break
    base = level
  # Resize with some margin, then warp: a slight rotation about the centre
  # plus a perspective tilt (one side farther away, so a bit shorter).
  img = base.resize((width, height), Image.BILINEAR if height < base.height else Image.BICUBIC)
  pad = max(1, int(0.04 * max(width, height)))
  padded = Image.new('RGBA', (width + 2 * pad, height + 2 * pad), (0, 0, 0, 0))
  padded.paste(img, (pad, pad))
  tilt = rng.uniform(-0.05, 0.05) * height
  angle = np.deg2rad(rng.normal(0, 1.2))
  cx, cy = padded.width / 2, padded.height / 2
  corners = np.array([[pad, pad], [pad + width, pad + tilt / 2], [pad + width, pad + height - tilt / 2],
                      [pad, pad + height]], dtype=np.float64)
  if tilt < 0:  # left side farther away instead
    corners = np.array([[pad, pad - tilt / 2], [pad + width, pad], [pad + width, pad + height],
                        [pad, pad + height + tilt / 2]], dtype=np.float64)
  rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  dst = (corners - [cx, cy]) @ rot.T + [cx, cy]
  src = np.array([[pad, pad], [pad + width, pad], [pad + width, pad + height], [pad, pad + height]], dtype=np.float64)
  coeffs = _perspective_coeffs(dst, src)
  img = padded.transform(padded.size, Image.PERSPECTIVE, coeffs, Image.BILINEAR)
  arr = np.asarray(img).astype(np.float32)
  h, w = arr.shape[:2]
  # Lighting: overall brightness, colour cast and a linear gradient.
  gain = rng.uniform(0.72, 1.12) * (1 + rng.uniform(-0.05, 0.05, size=3))
  gx, gy = rng.uniform(-0.18, 0.18, size=2)
  xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
  yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
  field = 1 + gx * xx + gy * yy
  arr[..., :3] = np.clip(arr[..., :3] * gain.astype(np.float32) * field[..., None], 0, 255)
  img = Image.fromarray(arr.astype(np.uint8), 'RGBA')
  if rng.random() < 0.35:
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0) * max(1.0, height / 120)))
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
