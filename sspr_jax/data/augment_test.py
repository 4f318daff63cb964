"""Tests for the on-device augmentations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import skimage.color
from PIL import Image, ImageEnhance

from sspr_jax.data import augment


def _images(batch=3, size=16, seed=0, dtype=np.uint8):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
  return images if dtype == np.uint8 else images.astype(dtype) / 255.0


def test_to_float_and_normalize_match_numpy():
  images = _images()
  expected = (images / 255.0 - np.array(augment.IMAGENET_MEAN)) / np.array(
    augment.IMAGENET_STD
  )
  out = jax.jit(augment.normalize)(images)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    augment.normalize(images / 255.0), expected, rtol=1e-5, atol=1e-5
  )


def test_horizontal_flip_is_all_or_nothing_per_image():
  images = _images(batch=16)
  flip = jax.jit(augment.horizontal_flip)
  np.testing.assert_array_equal(
    flip(jax.random.key(0), images, 1.0), images[:, :, ::-1]
  )
  np.testing.assert_array_equal(flip(jax.random.key(0), images, 0.0), images)
  out = np.asarray(flip(jax.random.key(1), images, 0.5))
  assert out.dtype == np.uint8
  flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
  kept = [np.array_equal(o, i) for o, i in zip(out, images)]
  assert all(f != k for f, k in zip(flipped, kept))
  assert 0 < sum(flipped) < 16


def test_rotate90_matches_np_rot90_per_example():
  images = _images(batch=4, size=8)
  k = np.array([0, 1, 2, 3])
  out = jax.jit(augment.rotate90)(images, k)
  for image, ki, o in zip(images, k, np.asarray(out)):
    np.testing.assert_array_equal(o, np.rot90(image, ki))
  # Counter-clockwise: the top-right corner moves to the top-left.
  np.testing.assert_array_equal(out[1, 0, 0], images[1, 0, -1])
  np.testing.assert_array_equal(
    augment.rotate90(images, 6), np.rot90(images, 2, axes=(1, 2))
  )


def test_grayscale_matches_pil_within_one_level():
  images = _images(batch=2, size=12)
  gray = np.asarray(augment.rgb_to_grayscale(images))[..., 0] * 255
  for image, g in zip(images, gray):
    pil = np.asarray(Image.fromarray(image).convert('L'), np.float64)
    assert np.max(np.abs(g - pil)) <= 1.0


def test_random_grayscale_probability_extremes():
  images = _images()
  out = np.asarray(augment.random_grayscale(jax.random.key(0), images, 1.0))
  np.testing.assert_allclose(
    out, np.repeat(augment.rgb_to_grayscale(images), 3, axis=-1), atol=1e-6
  )
  out = augment.random_grayscale(jax.random.key(0), images, 0.0)
  np.testing.assert_allclose(out, images / 255.0, atol=1e-6)


# -- random resized crop -----------------------------------------------------


def test_full_crop_equals_plain_resize():
  images = _images(batch=2, size=32)
  out = jax.jit(
    functools.partial(
      augment.random_resized_crop, size=12, scale=(1.0, 1.0), ratio=(1.0, 1.0)
    )
  )(jax.random.key(0), images)
  expected = jax.image.resize(
    images / 255.0, (2, 12, 12, 3), 'linear', antialias=True
  )
  np.testing.assert_allclose(out, expected, atol=1e-5)
  # And PIL's antialiased bilinear resize (8-bit rounding aside).
  pil = np.asarray(Image.fromarray(images[0]).resize((12, 12), Image.BILINEAR))
  assert np.max(np.abs(np.asarray(out[0]) * 255 - pil)) <= 2.0


def test_crop_params_are_valid_and_follow_scale_and_ratio():
  keys = jax.random.split(jax.random.key(0), 200)
  params = jax.jit(
    jax.vmap(
      lambda k: augment.random_resized_crop_params(
        k, 40, 60, (0.08, 1.0), (3 / 4, 4 / 3)
      )
    )
  )(keys)
  top, left, h, w = map(np.asarray, params)
  assert np.all((top >= 0) & (left >= 0) & (h > 0) & (w > 0))
  assert np.all((top + h <= 40) & (left + w <= 60))
  area = h * w / (40 * 60)
  assert np.all((area > 0.05) & (area < 1.05))
  assert np.all((w / h > 0.6) & (w / h < 1.6))
  assert len(set(zip(top, left, h, w))) > 150  # random, not constant


@pytest.mark.parametrize(
  'height, width, expected',
  [
    # No candidate fits (scale > 1): torchvision's central fallback crop,
    # aspect ratio clamped into `ratio`.
    (20, 40, (0, 6, 20, 27)),  # too wide: w = round(20 * 4/3) = 27
    (40, 20, (6, 0, 27, 20)),  # too tall: h = round(20 / (3/4)) = 27
    (30, 32, (0, 0, 30, 32)),  # ratio within range: whole image
  ],
)
def test_crop_params_fallback(height, width, expected):
  params = augment.random_resized_crop_params(
    jax.random.key(0), height, width, scale=(2.0, 3.0)
  )
  assert tuple(int(p) for p in params) == expected


def test_random_resized_crop_shapes_determinism_and_keys():
  images = _images(batch=4, size=24)
  crop = jax.jit(functools.partial(augment.random_resized_crop, size=10))
  a, b = crop(jax.random.key(0), images), crop(jax.random.key(0), images)
  c = crop(jax.random.key(1), images)
  assert a.shape == (4, 10, 10, 3) and a.dtype == jnp.float32
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  # One key per example: identical inputs get different crops.
  same = np.repeat(images[:1], 4, axis=0)
  out = np.asarray(crop(jax.random.key(0), same))
  assert not np.allclose(out[0], out[1])


def test_crops_of_a_canvas_see_only_the_image():
  # A wide and a tall one-colour image on 32 px canvases (the host pipeline's
  # `fit_canvas`): every crop, border pixels included, is that colour.
  from sspr_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  colours = np.array([[200, 30, 90], [10, 220, 140]], np.uint8)
  shapes = [(10, 30), (30, 8)]
  canvas, valid = zip(
    *[
      pipeline.fit_canvas(np.full(shape + (3,), colour, np.uint8), 32)
      for shape, colour in zip(shapes, colours)
    ]
  )
  canvas, valid = np.stack(canvas), np.stack(valid)
  np.testing.assert_array_equal(valid, shapes)
  crop = jax.jit(
    functools.partial(augment.random_resized_crop, size=12, valid_size=valid)
  )
  for seed in range(10):
    out = np.asarray(crop(jax.random.key(seed), canvas))
    np.testing.assert_allclose(
      out, np.broadcast_to(colours[:, None, None] / 255, out.shape), atol=1e-5
    )
  # The parameters follow torchvision's on the valid size, traced or not.
  key = jax.random.key(3)
  traced = jax.jit(augment.random_resized_crop_params)(key, 10, 30)
  assert tuple(map(int, traced)) == tuple(
    map(int, augment.random_resized_crop_params(key, 10, 30))
  )
  # Fallback with a traced size (no candidate fits): ratio clamped.
  fallback = jax.jit(
    functools.partial(augment.random_resized_crop_params, scale=(2.0, 3.0))
  )
  assert tuple(map(int, fallback(key, 20, 40))) == (0, 6, 20, 27)
  assert tuple(map(int, fallback(key, 40, 20))) == (6, 0, 27, 20)


def test_random_crop_inside_the_valid_region():
  image = np.arange(40 * 40, dtype=np.int32).reshape(40, 40)
  canvas = np.repeat(image[None, :, :, None], 2, axis=0)
  valid = np.array([[40, 25], [12, 40]], np.int32)
  seen = set()
  for seed in range(10):
    out = np.asarray(
      augment.random_crop(jax.random.key(seed), canvas, 10, valid)
    )
    assert out.shape == (2, 10, 10, 1) and out.dtype == np.int32
    for i, (h, w) in enumerate(valid):
      y, x = divmod(int(out[i, 0, 0, 0]), 40)
      assert 0 <= y <= h - 10 and 0 <= x <= w - 10
      np.testing.assert_array_equal(
        out[i, ..., 0], image[y : y + 10, x : x + 10]
      )
      seen.add((i, y, x))
  assert len(seen) > 8  # random offsets


def test_resized_crop_of_a_region_matches_slicing():
  images = _images(batch=1, size=20)
  # Identity scale: the crop resized to its own size is a plain slice.
  out = augment.resized_crop(images, 3, 5, 8, 10, size=(8, 10))
  np.testing.assert_allclose(out[0], images[0, 3:11, 5:15] / 255.0, atol=1e-5)


# -- colour ------------------------------------------------------------------


def test_hue_shift_by_zero_is_identity_and_matches_skimage():
  images = _images(batch=2, size=8, dtype=np.float32)
  adjust_hue = jax.jit(augment.adjust_hue)
  np.testing.assert_allclose(adjust_hue(images, 0.0), images, atol=1e-5)
  hsv = skimage.color.rgb2hsv(images[1])
  hsv[..., 0] = (hsv[..., 0] + 0.3) % 1.0
  expected = skimage.color.hsv2rgb(hsv)
  np.testing.assert_allclose(
    augment.adjust_hue(images[1], 0.3), expected, atol=1e-5
  )
  # Per-image factors.
  out = adjust_hue(images, jnp.array([0.0, 0.3]))
  np.testing.assert_allclose(out[0], images[0], atol=1e-5)
  np.testing.assert_allclose(out[1], expected, atol=1e-5)


@pytest.mark.parametrize(
  'op, enhancer, factor',
  [
    (augment.adjust_brightness, ImageEnhance.Brightness, 1.3),
    (augment.adjust_contrast, ImageEnhance.Contrast, 0.6),
    (augment.adjust_saturation, ImageEnhance.Color, 1.5),
  ],
)
def test_colour_adjustments_match_pil(op, enhancer, factor):
  image = _images(batch=1, size=16)[0]
  out = np.asarray(op(image, factor)) * 255
  pil = np.asarray(enhancer(Image.fromarray(image)).enhance(factor), np.float64)
  assert np.max(np.abs(out - pil)) <= 2.0


def test_color_jitter_identity_cases_and_randomness():
  images = _images(batch=4, size=12, dtype=np.float32)
  jitter = jax.jit(augment.color_jitter)  # strengths and p are traced
  key = jax.random.key(0)
  np.testing.assert_allclose(
    jitter(key, images, 0.0, 0.0, 0.0, 0.0, 1.0), images, atol=1e-5
  )
  strong = (0.8, 0.8, 0.8, 0.2)
  np.testing.assert_allclose(
    jitter(key, images, *strong, 0.0), images, atol=1e-6
  )
  a = jitter(key, images, *strong, 1.0)
  np.testing.assert_array_equal(a, jitter(key, images, *strong, 1.0))
  assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
  assert not np.allclose(a, jitter(jax.random.key(1), images, *strong, 1.0))
  assert all(not np.allclose(x, y, atol=1e-3) for x, y in zip(a, images))


def test_color_jitter_params_ranges_and_random_order():
  keys = jax.random.split(jax.random.key(0), 64)
  order, factors, apply = jax.jit(
    jax.vmap(lambda k: augment.color_jitter_params(k, 0.4, 0.8, 1.5, 0.1, 0.8))
  )(keys)
  order, factors = np.asarray(order), np.asarray(factors)
  assert all(sorted(o) == [0, 1, 2, 3] for o in order)
  assert len({tuple(o) for o in order}) > 10
  lows, highs = [0.6, 0.2, 0.0, -0.1], [1.4, 1.8, 2.5, 0.1]
  assert np.all((factors >= lows) & (factors <= highs))
  assert 0.5 < np.mean(apply) < 1.0


def test_apply_color_jitter_follows_the_given_order():
  image = _images(batch=1, size=8, dtype=np.float32)[0]
  factors = jnp.array([1.3, 0.7, 1.8, 0.25])
  apply = jax.jit(augment.apply_color_jitter)
  expected = image
  for op, f in zip(
    [
      augment.adjust_hue,
      augment.adjust_saturation,
      augment.adjust_contrast,
      augment.adjust_brightness,
    ],
    factors[::-1],
  ):
    expected = op(expected, f)
  np.testing.assert_allclose(
    apply(image, jnp.array([3, 2, 1, 0]), factors), expected, atol=1e-5
  )
  # Clipping makes the ops non-commuting, so another order differs.
  assert not np.allclose(
    apply(image, jnp.array([0, 1, 2, 3]), factors), expected, atol=1e-3
  )


def test_color_distortion_range_and_strength_zero():
  images = _images(batch=4, size=12)
  distort = jax.jit(augment.color_distortion)
  out = distort(jax.random.key(0), images, 1.0)
  assert out.shape == images.shape and out.dtype == jnp.float32
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  plain = distort(jax.random.key(0), images, 0.0, 0.8, 0.0)
  np.testing.assert_allclose(plain, images / 255.0, atol=1e-5)


# -- blur --------------------------------------------------------------------


def test_blur_with_tiny_sigma_is_identity():
  images = _images(batch=2, size=16, dtype=np.float32)
  np.testing.assert_allclose(
    augment.gaussian_blur(images, 0.05), images, atol=1e-5
  )


def test_blur_matches_scipy_separable_gaussian():
  images = _images(batch=2, size=20, dtype=np.float32)
  sigmas = np.array([0.7, 1.8])
  out = jax.jit(augment.gaussian_blur, static_argnums=2)(images, sigmas, 7)
  for image, sigma, o in zip(images, sigmas, np.asarray(out)):
    expected = image
    for axis in (0, 1):  # scipy 'mirror' == torch/numpy 'reflect'
      expected = scipy.ndimage.gaussian_filter1d(
        expected, sigma, axis=axis, mode='mirror', radius=3
      )
    np.testing.assert_allclose(o, expected, atol=1e-5)
  assert augment.blur_kernel_size(224) == 23
  assert augment.blur_kernel_size(16) == 3


def test_random_blur_probability():
  images = _images(batch=3, size=16)
  blur = jax.jit(augment.random_gaussian_blur, static_argnames=('p',))
  np.testing.assert_allclose(
    blur(jax.random.key(0), images, p=0.0), images / 255.0, atol=1e-6
  )
  # sigma >= 1 so that every image visibly changes.
  out = augment.random_gaussian_blur(jax.random.key(0), images, 1.0, (1.0, 2.0))
  assert all(
    not np.allclose(o, i / 255.0, atol=1e-3)
    for o, i in zip(np.asarray(out), images)
  )


# -- jigsaw ------------------------------------------------------------------


def test_jigsaw_tiles_come_from_the_permuted_cells():
  grid, cell, jitter = 3, 10, 4
  values = np.arange(9, dtype=np.uint8).reshape(3, 3) * 20 + 10
  image = np.kron(values, np.ones((cell, cell), np.uint8))  # constant cells
  images = np.repeat(image[None, :, :, None], 3, axis=-1)[[0, 0]]
  perms = np.stack([np.arange(9), np.random.default_rng(0).permutation(9)])
  tiles = jax.jit(augment.jigsaw_tiles, static_argnums=(3, 4))(
    jax.random.key(0), images, perms, grid, jitter
  )
  assert tiles.shape == (2, 9, cell - jitter, cell - jitter, 3)
  assert tiles.dtype == jnp.uint8
  for b in range(2):
    for t in range(9):
      np.testing.assert_array_equal(tiles[b, t], values.ravel()[perms[b, t]])


def test_jigsaw_tiles_are_jittered_slices_of_their_cell():
  size, cell, tile = 30, 10, 7
  image = np.arange(size * size, dtype=np.float32).reshape(size, size)
  images = np.repeat(image[None, :, :, None], 3, axis=-1)
  offsets = set()
  for seed in range(4):
    tiles = np.asarray(
      augment.jigsaw_tiles(
        jax.random.key(seed), images, np.arange(9)[None], 3, cell - tile
      )
    )
    for t in range(9):
      r, c = divmod(t, 3)
      y, x = divmod(int(tiles[0, t, 0, 0, 0]), size)
      oy, ox = y - r * cell, x - c * cell
      assert 0 <= oy <= cell - tile and 0 <= ox <= cell - tile
      np.testing.assert_array_equal(
        tiles[0, t], images[0, y : y + tile, x : x + tile]
      )
      offsets.add((oy, ox))
  assert len(offsets) > 5
  with pytest.raises(ValueError):
    augment.jigsaw_tiles(jax.random.key(0), images, np.arange(9)[None], 3, 10)


# -- composition -------------------------------------------------------------


def test_contrastive_view_shapes_determinism_and_keys():
  images = _images(batch=3, size=24)
  view = jax.jit(augment.contrastive_view, static_argnames=('size',))
  a = view(jax.random.key(0), images, size=16, color_strength=1.0)
  assert a.shape == (3, 16, 16, 3) and a.dtype == jnp.float32
  np.testing.assert_array_equal(
    a, view(jax.random.key(0), images, size=16, color_strength=1.0)
  )
  assert not np.allclose(
    a, view(jax.random.key(1), images, size=16, color_strength=1.0)
  )
  # Normalised from [0, 1].
  raw = np.asarray(a) * augment.IMAGENET_STD + augment.IMAGENET_MEAN
  assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
