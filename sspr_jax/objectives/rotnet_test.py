import jax
import numpy as np
import pytest

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


def test_loss_prefers_correct_rotation():
  labels = np.array([0, 1, 2, 3])
  right = np.eye(4, dtype=np.float32)[labels] * 5
  loss_right, metrics_right = rotnet.loss_and_metrics(right, labels)
  loss_wrong, metrics_wrong = rotnet.loss_and_metrics(
    np.roll(right, 1, axis=1), labels
  )
  assert loss_right < loss_wrong
  assert metrics_right['accuracy'] == 1.0 and metrics_wrong['accuracy'] == 0.0
