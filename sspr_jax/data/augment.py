"""On-device image augmentations in pure JAX (jittable, one RNG per example).

Images are NHWC batches ``[B, H, W, 3]``, uint8 (0-255) or float (0-1).
Random ops take one key for the batch and split it per example. Ops that
interpolate or change colours return float32 in [0, 1]; pure pixel moves
(flip, rotate90, jigsaw_tiles) keep the input dtype. Deterministic colour ops
accept any leading dims and a factor that is a scalar or one per image.

Semantics follow torchvision (as used by VISSL / MoCo v2 / SimCLR), with these
known differences: torchvision's PIL path rounds to 8 bits after every colour
op (here everything stays float); grayscale uses PIL's ITU-R 601-2 weights
(0.299, 0.587, 0.114) everywhere, where torchvision's tensor path uses 0.2989.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)


def to_float(images: jax.Array) -> jax.Array:
  """uint8 0-255 -> float32 0-1; floats are only cast to float32."""
  if jnp.issubdtype(images.dtype, jnp.integer):
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def _per_example(fn: Callable, key: jax.Array, images: jax.Array, *args):
  """vmaps ``fn(key, image, *args)`` over the batch with a key per example."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(fn)(keys, images, *args)


def _per_image(factor, ndim: int = 3) -> jax.Array:
  """Broadcasts a scalar or per-image [...] factor against [..., H, W, C]."""
  return jnp.asarray(factor, jnp.float32).reshape(
    jnp.shape(factor) + (1,) * ndim
  )


# ----------------------------------------------------------------------------
# Random resized crop.


def random_resized_crop_params(
  key: jax.Array,
  height,
  width,
  scale: Sequence[float] = (0.08, 1.0),
  ratio: Sequence[float] = (3 / 4, 4 / 3),
  attempts: int = 10,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """torchvision ``RandomResizedCrop.get_params`` for one image, branch-free.

  ``height`` and ``width`` may be traced (a crop's valid size in its canvas).
  Draws ``attempts`` candidates at once and takes the first that fits; if
  none fits, falls back to torchvision's central crop with the aspect ratio
  clamped to ``ratio``. Returns int32 scalars (top, left, crop_h, crop_w).
  """
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  height = jnp.asarray(height, jnp.int32)
  width = jnp.asarray(width, jnp.int32)
  area = (height * width).astype(jnp.float32)
  target_area = area * jax.random.uniform(
    k_area, (attempts,), minval=scale[0], maxval=scale[1]
  )
  log_ratio = jax.random.uniform(
    k_ratio, (attempts,), minval=math.log(ratio[0]), maxval=math.log(ratio[1])
  )
  aspect = jnp.exp(log_ratio)
  # jnp.round rounds half to even like Python's round().
  w = jnp.round(jnp.sqrt(target_area * aspect)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(target_area / aspect)).astype(jnp.int32)
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(fits)
  w, h, any_fits = w[first], h[first], jnp.any(fits)
  # torch.randint(0, n - c + 1): uniform over valid offsets.
  top = jnp.floor(jax.random.uniform(k_top) * (height - h + 1))
  left = jnp.floor(jax.random.uniform(k_left) * (width - w + 1))

  in_ratio = width / height
  fb_w = jnp.where(
    in_ratio > max(ratio), jnp.round(height * max(ratio)), width
  ).astype(jnp.int32)
  fb_h = jnp.where(
    in_ratio < min(ratio), jnp.round(width / min(ratio)), height
  ).astype(jnp.int32)

  def pick(a, b):
    return jnp.where(any_fits, a, b).astype(jnp.int32)

  return (
    pick(top, (height - fb_h) // 2),
    pick(left, (width - fb_w) // 2),
    pick(h, fb_h),
    pick(w, fb_w),
  )


def resized_crop(
  images: jax.Array,
  top,
  left,
  crop_h,
  crop_w,
  size: int | tuple[int, int],
  antialias: bool = True,
) -> jax.Array:
  """Crops [top:top+crop_h, left:left+crop_w] and resizes, in one op.

  Bilinear, with antialiasing when shrinking (torchvision >= 0.17 and PIL
  do the same). Crop parameters are scalars or one per image.
  """
  out_h, out_w = (size, size) if isinstance(size, int) else size
  images = to_float(images)

  def one(image, top, left, crop_h, crop_w):
    scale = jnp.stack([out_h / crop_h, out_w / crop_w]).astype(jnp.float32)
    # Output pixel coordinate = input coordinate * scale + translation, so the
    # crop corner (top, left) lands on 0.
    translation = -jnp.stack([top, left]).astype(jnp.float32) * scale
    return jax.image.scale_and_translate(
      image,
      (out_h, out_w, image.shape[-1]),
      (0, 1),
      scale,
      translation,
      method='linear',
      antialias=antialias,
    )

  params = (
    jnp.broadcast_to(p, images.shape[:1]) for p in (top, left, crop_h, crop_w)
  )
  return jax.vmap(one)(images, *params)


def _valid_sizes(images: jax.Array, valid_size) -> jax.Array:
  """[B, 2] (height, width) of each image's valid region; None: all of it."""
  if valid_size is None:
    return jnp.broadcast_to(
      jnp.asarray(images.shape[1:3], jnp.int32), (images.shape[0], 2)
    )
  return jnp.asarray(valid_size, jnp.int32)


def random_resized_crop(
  key: jax.Array,
  images: jax.Array,
  size: int,
  scale: Sequence[float] = (0.08, 1.0),
  ratio: Sequence[float] = (3 / 4, 4 / 3),
  valid_size=None,
) -> jax.Array:
  """torchvision ``RandomResizedCrop(size, scale, ratio)`` per example.

  With ``valid_size`` [B, 2] (a canvas batch: image i is
  ``images[i, :h_i, :w_i]``) each crop is drawn inside its image's valid
  region, so it sees the crop's own aspect ratio and resolution.
  """
  sizes = _valid_sizes(images, valid_size)

  def one(key, image, hw):
    params = random_resized_crop_params(key, hw[0], hw[1], scale, ratio)
    return resized_crop(image[None], *params, size=size)[0]

  return _per_example(one, key, images, sizes)


def random_crop(
  key: jax.Array, images: jax.Array, size: int, valid_size=None
) -> jax.Array:
  """torchvision ``RandomCrop(size)`` per example, inside the valid region.

  A region smaller than ``size`` is taken from its top-left corner (the rest
  is canvas padding). Keeps the input dtype.
  """
  sizes = _valid_sizes(images, valid_size)

  def one(key, image, hw):
    k_top, k_left = jax.random.split(key)
    top = jax.random.randint(k_top, (), 0, jnp.maximum(hw[0] - size, 0) + 1)
    left = jax.random.randint(k_left, (), 0, jnp.maximum(hw[1] - size, 0) + 1)
    return jax.lax.dynamic_slice(
      image, (top, left, 0), (size, size, image.shape[-1])
    )

  return _per_example(one, key, images, sizes)


# ----------------------------------------------------------------------------
# Flips, rotations, jigsaw tiles.


def horizontal_flip(
  key: jax.Array, images: jax.Array, p: float = 0.5
) -> jax.Array:
  """Mirrors each image left-right with probability ``p``."""
  flip = jax.random.uniform(key, images.shape[:1]) < p
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)


def rotate90(images: jax.Array, k) -> jax.Array:
  """Rotates image i by ``90 * k[i]`` degrees counter-clockwise.

  Counter-clockwise like ``np.rot90`` and torchvision's ``rotate(angle)``,
  which VISSL's RotNet (``ImgRotatePil``) uses, so label k means 90k degrees.
  ``k`` is an int or int array [B]; images must be square when k is traced.
  """
  k = jnp.broadcast_to(jnp.asarray(k, jnp.int32), images.shape[:1])
  branches = [functools.partial(jnp.rot90, k=i, axes=(0, 1)) for i in range(4)]
  return jax.vmap(lambda image, k: jax.lax.switch(k % 4, branches, image))(
    images, k
  )


def jigsaw_tiles(
  key: jax.Array,
  images: jax.Array,
  permutations: jax.Array,
  grid: int = 3,
  jitter: int = 21,
) -> jax.Array:
  """Cuts each image into grid x grid jittered tiles in permuted order.

  The image (side S) is split into cells of side ``S // grid``; from each cell
  a tile of side ``cell - jitter`` is taken at a random offset in
  [0, jitter] per axis (255 px -> 85 px cells -> 64 px tiles for jitter 21,
  as VISSL's ImgPatchesFromTensor). Cells are numbered row-major and output
  tile t of image i is cell ``permutations[i, t]`` (VISSL's
  ShuffleImgPatches convention; VISSL numbers cells column-major, which only
  relabels the permutation set).

  Args:
    images: [B, S, S, C].
    permutations: [B, grid**2] ints, each a permutation of range(grid**2).

  Returns:
    [B, grid**2, tile, tile, C], same dtype as ``images``.
  """
  cell = min(images.shape[1], images.shape[2]) // grid
  tile = cell - jitter
  if tile <= 0:
    raise ValueError(f'jitter {jitter} leaves no tile in {cell} px cells.')

  def one(key, image, permutation):
    offsets = jax.random.randint(key, (grid * grid, 2), 0, jitter + 1)
    tiles = [
      jax.lax.dynamic_slice(
        image,
        (
          r * cell + offsets[r * grid + c, 0],
          c * cell + offsets[r * grid + c, 1],
          0,
        ),
        (tile, tile, image.shape[-1]),
      )
      for r in range(grid)
      for c in range(grid)
    ]
    return jnp.stack(tiles)[permutation]

  return _per_example(one, key, images, jnp.asarray(permutations))


# ----------------------------------------------------------------------------
# Colour.


def rgb_to_grayscale(images: jax.Array) -> jax.Array:
  """ITU-R 601-2 luma (PIL ``convert('L')``): [..., 3] -> [..., 1] float."""
  return jnp.sum(to_float(images) * jnp.asarray(_LUMA), -1, keepdims=True)


def adjust_brightness(images, factor) -> jax.Array:
  """Scales intensities by ``factor`` (blend with black), clipped to [0, 1]."""
  return jnp.clip(to_float(images) * _per_image(factor), 0.0, 1.0)


def adjust_contrast(images, factor) -> jax.Array:
  """Blends with the image's mean gray level (torchvision semantics)."""
  images = to_float(images)
  mean = jnp.mean(rgb_to_grayscale(images), axis=(-3, -2, -1), keepdims=True)
  return _blend(images, mean, factor)


def adjust_saturation(images, factor) -> jax.Array:
  """Blends with the per-pixel grayscale image."""
  images = to_float(images)
  return _blend(images, rgb_to_grayscale(images), factor)


def adjust_hue(images, factor) -> jax.Array:
  """Shifts hue by ``factor`` turns (in [-0.5, 0.5]) through HSV."""
  hsv = rgb_to_hsv(to_float(images))
  hue = jnp.mod(hsv[..., 0] + _per_image(factor, 2), 1.0)
  return hsv_to_rgb(jnp.concatenate([hue[..., None], hsv[..., 1:]], -1))


def _blend(images, other, factor):
  factor = _per_image(factor)
  return jnp.clip(factor * images + (1.0 - factor) * other, 0.0, 1.0)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
  """RGB in [0, 1] -> HSV in [0, 1] (torchvision's ``_rgb2hsv``)."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  maxc, minc = jnp.max(rgb, -1), jnp.min(rgb, -1)
  gray = maxc == minc
  chroma = maxc - minc
  s = chroma / jnp.where(gray, 1.0, maxc)
  divisor = jnp.where(gray, 1.0, chroma)
  rc, gc, bc = ((maxc - c) / divisor for c in (r, g, b))
  h = jnp.where(
    maxc == r, bc - gc, jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc)
  )
  h = jnp.where(gray, 0.0, h)
  h = jnp.mod(h / 6.0 + 1.0, 1.0)
  return jnp.stack([h, s, maxc], -1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
  """HSV in [0, 1] -> RGB in [0, 1] (torchvision's ``_hsv2rgb``)."""
  h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  sector = jnp.floor(h * 6.0)
  f = h * 6.0 - sector
  sector = sector.astype(jnp.int32) % 6
  p = jnp.clip(v * (1.0 - s), 0.0, 1.0)
  q = jnp.clip(v * (1.0 - s * f), 0.0, 1.0)
  t = jnp.clip(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
  choose = lambda *vals: jnp.choose(sector, vals, mode='clip')
  return jnp.stack(
    [
      choose(v, q, p, p, t, v),
      choose(t, v, v, q, p, p),
      choose(p, p, t, v, v, q),
    ],
    -1,
  )


def color_jitter(
  key: jax.Array,
  images: jax.Array,
  brightness=0.0,
  contrast=0.0,
  saturation=0.0,
  hue=0.0,
  p=1.0,
) -> jax.Array:
  """torchvision ``RandomApply([ColorJitter(b, c, s, h)], p)`` per example.

  Factors are uniform in [max(0, 1 - x), 1 + x] (hue: [-h, h]) and the four
  ops run in a random order per example, as in torchvision. Strengths and
  ``p`` may be traced values.
  """

  def one(key, image):
    order, factors, apply = color_jitter_params(
      key, brightness, contrast, saturation, hue, p
    )
    return jnp.where(apply, apply_color_jitter(image, order, factors), image)

  return _per_example(one, key, to_float(images))


def color_jitter_params(
  key: jax.Array, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, p=1.0
):
  """Samples one image's jitter: (op order [4], factors [4], apply flag).

  Op indices: 0 brightness, 1 contrast, 2 saturation, 3 hue.
  """
  k_apply, k_order, k_factors = jax.random.split(key, 3)
  strengths = jnp.asarray([brightness, contrast, saturation], jnp.float32)
  u = jax.random.uniform(k_factors, (4,))
  low = jnp.maximum(0.0, 1.0 - strengths)
  factors = jnp.concatenate(
    [
      low + u[:3] * (1.0 + strengths - low),
      jnp.asarray(hue, jnp.float32)[None] * (2.0 * u[3:] - 1.0),
    ]
  )
  order = jax.random.permutation(k_order, 4)
  return order, factors, jax.random.uniform(k_apply) < p


def apply_color_jitter(
  image: jax.Array, order: jax.Array, factors: jax.Array
) -> jax.Array:
  """Applies the four colour ops to one image in ``order`` with ``factors``."""
  ops = [
    lambda x: adjust_brightness(x, factors[0]),
    lambda x: adjust_contrast(x, factors[1]),
    lambda x: adjust_saturation(x, factors[2]),
    lambda x: adjust_hue(x, factors[3]),
  ]
  # A loop, not unrolled: under vmap each switch evaluates all four ops, and
  # one copy of them keeps compile times short.
  return jax.lax.fori_loop(
    0, 4, lambda i, x: jax.lax.switch(order[i], ops, x), to_float(image)
  )


def random_grayscale(
  key: jax.Array, images: jax.Array, p: float = 0.2
) -> jax.Array:
  """Replaces each image by its 3-channel luma with probability ``p``."""
  images = to_float(images)
  gray = jnp.broadcast_to(rgb_to_grayscale(images), images.shape)
  chosen = jax.random.uniform(key, images.shape[:1]) < p
  return jnp.where(chosen[:, None, None, None], gray, images)


def color_distortion(
  key: jax.Array,
  images: jax.Array,
  strength: float = 1.0,
  jitter_p: float = 0.8,
  grayscale_p: float = 0.2,
) -> jax.Array:
  """SimCLR's ``get_color_distortion(s)``: jitter (p=0.8) then grayscale.

  Jitter strengths are 0.8s, 0.8s, 0.8s, 0.2s; s=0.5 gives MoCo v2's
  ColorJitter(0.4, 0.4, 0.4, 0.1).
  """
  k_jitter, k_gray = jax.random.split(key)
  images = color_jitter(
    k_jitter,
    images,
    0.8 * strength,
    0.8 * strength,
    0.8 * strength,
    0.2 * strength,
    p=jitter_p,
  )
  return random_grayscale(k_gray, images, grayscale_p)


# ----------------------------------------------------------------------------
# Blur and normalisation.


def blur_kernel_size(image_size: int) -> int:
  """Odd kernel of ~10% of the image side (SimCLR), at least 3."""
  return max(3, 2 * (int(0.1 * image_size) // 2) + 1)


def gaussian_blur(
  images: jax.Array, sigma, kernel_size: int | None = None
) -> jax.Array:
  """Separable Gaussian blur with reflect padding (torchvision GaussianBlur).

  ``sigma`` is a scalar or one per image (pixels); ``kernel_size`` (odd)
  defaults to ``blur_kernel_size`` of the image height.
  """
  images = to_float(images)
  if kernel_size is None:
    kernel_size = blur_kernel_size(images.shape[-3])
  radius = kernel_size // 2
  taps = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  sigma = _per_image(sigma, 1)  # [..., 1]
  weights = jnp.exp(-0.5 * (taps / sigma) ** 2)
  weights = weights / jnp.sum(weights, -1, keepdims=True)  # [..., K]

  def blur_axis(x, axis):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    x = jnp.pad(x, pad, mode='reflect')
    length = x.shape[axis] - 2 * radius
    # A weighted sum of K shifted slices: cheap and vmap-friendly, unlike a
    # convolution with a per-example kernel on XLA CPU.
    return sum(
      _per_image(weights[..., i])
      * jax.lax.slice_in_dim(x, i, i + length, axis=axis)
      for i in range(kernel_size)
    )

  return blur_axis(blur_axis(images, images.ndim - 3), images.ndim - 2)


def random_gaussian_blur(
  key: jax.Array,
  images: jax.Array,
  p: float = 0.5,
  sigma_range: Sequence[float] = (0.1, 2.0),
  kernel_size: int | None = None,
) -> jax.Array:
  """Blurs each image with probability ``p``, sigma ~ U(sigma_range)."""
  images = to_float(images)
  k_apply, k_sigma = jax.random.split(key)
  batch = images.shape[:1]
  sigma = jax.random.uniform(
    k_sigma, batch, minval=sigma_range[0], maxval=sigma_range[1]
  )
  chosen = jax.random.uniform(k_apply, batch) < p
  blurred = gaussian_blur(images, sigma, kernel_size)
  return jnp.where(chosen[:, None, None, None], blurred, images)


def normalize(
  images: jax.Array,
  mean: Sequence[float] = IMAGENET_MEAN,
  std: Sequence[float] = IMAGENET_STD,
) -> jax.Array:
  """(x - mean) / std per channel on 0-1 images (uint8 is scaled first)."""
  return (to_float(images) - jnp.asarray(mean)) / jnp.asarray(std)


# ----------------------------------------------------------------------------
# Compositions.


def contrastive_view(
  key: jax.Array,
  images: jax.Array,
  size: int = 224,
  crop_scale: Sequence[float] = (0.08, 1.0),
  flip_p: float = 0.5,
  color_strength: float = 0.5,
  color_jitter_p: float = 0.8,
  grayscale_p: float = 0.2,
  blur_p: float = 0.5,
  blur_sigma: Sequence[float] = (0.1, 2.0),
  normalise: bool = True,
  valid_size=None,
) -> jax.Array:
  """One MoCo v2 / SimCLR view per image: [B, H, W, 3] -> [B, size, size, 3].

  RandomResizedCrop(size, crop_scale) -> h-flip -> colour distortion
  (strength; 0.5 = MoCo v2, 1.0 = SimCLR) -> Gaussian blur (p, sigma range,
  ~10% kernel) -> ImageNet normalisation. Flip commutes with the colour ops
  and the symmetric blur, so this order equals MoCo v2's (flip last).
  Call twice with different keys for two views. ``valid_size``: see
  ``random_resized_crop``.
  """
  k_crop, k_flip, k_color, k_blur = jax.random.split(key, 4)
  views = random_resized_crop(
    k_crop, images, size, crop_scale, valid_size=valid_size
  )
  views = horizontal_flip(k_flip, views, flip_p)
  views = color_distortion(
    k_color, views, color_strength, color_jitter_p, grayscale_p
  )
  views = random_gaussian_blur(
    k_blur, views, blur_p, blur_sigma, blur_kernel_size(size)
  )
  return normalize(views) if normalise else views
