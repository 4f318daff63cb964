import jax
import numpy as np
import pytest

from sspr_jax.data import augment
from sspr_jax.objectives import rotnet


def _rot90_ccw(image):
  """One counter-clockwise quarter turn of [H, W, C] by explicit indexing."""
  h, w = image.shape[:2]
  out = np.empty((w, h) + image.shape[2:], image.dtype)
  for i in range(w):
    for j in range(h):
      out[i, j] = image[j, w - 1 - i]
  return out


def test_rotate_batch_matches_reference():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(3, 5, 5, 2), dtype=np.uint8)
  views, labels = jax.jit(rotnet.rotate_batch)(images)
  assert views.shape == (12, 5, 5, 2) and views.dtype == np.uint8
  for i, image in enumerate(images):
    rotated = image
    for r in range(4):
      np.testing.assert_array_equal(views[4 * i + r], rotated)
      assert labels[4 * i + r] == r
      rotated = _rot90_ccw(rotated)
    np.testing.assert_array_equal(rotated, image)  # four turns: identity


def test_rotate_batch_rejects_non_square():
  with pytest.raises(ValueError, match='square'):
    rotnet.rotate_batch(np.zeros((2, 4, 6, 3), np.uint8))


def _config(rotations_per_image):
  from configs import common  # pylint: disable=g-import-not-at-top

  c = common.pretrain_config('rotnet')
  c.model.backbone = 'resnet_tiny'
  c.rotnet = dict(
    view_size=8, crop_scale=(1.0, 1.0), rotations_per_image=rotations_per_image
  )
  return c


@pytest.mark.parametrize('per_image', [1, 4])
def test_views_rotate_the_flipped_crop(per_image):
  # Scale 1 on a square image: the crop is the whole image (torchvision's
  # fallback), so each view is a rotation of the image or of its mirror.
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(16, 8, 8, 3), dtype=np.uint8)
  views = jax.jit(rotnet.RotNet(_config(per_image)).views)(
    jax.random.key(0), {'image': images}
  )
  labels = np.asarray(views['labels'])
  assert views['images'].shape == (16 * per_image, 8, 8, 3)
  if per_image == 4:
    np.testing.assert_array_equal(labels, np.tile(np.arange(4), 16))
  else:
    assert len(set(labels)) == 4  # one random rotation per image
  normalise = lambda x: (
    (x / 255.0 - augment.IMAGENET_MEAN) / augment.IMAGENET_STD
  )
  flipped = 0
  for i, view in enumerate(np.asarray(views['images'])):
    image = images[i // per_image]
    candidates = [np.rot90(im, labels[i]) for im in (image, image[:, ::-1])]
    errors = [np.abs(view - normalise(c)).max() for c in candidates]
    assert min(errors) < 1e-4, errors
    flipped += errors[1] < errors[0]
  assert 0 < flipped < len(labels)


def test_bad_rotations_per_image():
  with pytest.raises(ValueError, match='rotations_per_image'):
    rotnet.RotNet(_config(2)).views(
      jax.random.key(0), {'image': np.zeros((2, 8, 8, 3), np.uint8)}
    )
