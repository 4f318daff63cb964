"""RotNet (Gidaris et al. 2018): predict which of 4 rotations was applied.

Every image is shown at 0, 90, 180 and 270 degrees; the head has 4 outputs.
"""

import jax
import jax.numpy as jnp

from sspr_jax.data import augment
from sspr_jax.models import heads
from sspr_jax.objectives import base
from sspr_jax.objectives.common import classification_loss

NUM_CLASSES = 4


def rotate_batch(images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Builds the 4-rotation batch.

  Args:
    images: [B, H, W, C] with H == W (rotations must keep the shape).

  Returns:
    (views [4B, H, W, C], labels [4B] int32) with
    views[4 * i + r] = rot90(images[i], r) (counter-clockwise, axes (1, 2))
    and labels[4 * i + r] = r. The 4 copies of an image are adjacent so that
    a batch sharded along axis 0 keeps them on the image's own device.
  """
  if images.shape[1] != images.shape[2]:
    raise ValueError(f'RotNet needs square images, got {images.shape}.')
  views = jnp.stack(
    [jnp.rot90(images, r, axes=(1, 2)) for r in range(4)], axis=1
  )
  views = views.reshape((-1,) + images.shape[1:])
  labels = jnp.tile(jnp.arange(NUM_CLASSES, dtype=jnp.int32), images.shape[0])
  return views, labels


def loss_and_metrics(
  logits: jax.Array, labels: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Cross-entropy over the 4 rotation classes and accuracy."""
  return classification_loss(logits, labels)


class RotNet(base.Classification):
  """Views: RandomResizedCrop + h-flip, then the 4 rotations; head C -> 4."""

  name = 'rotnet'

  def make_head(self):
    return heads.LinearHead(NUM_CLASSES, dtype=self.dtype)

  def views(self, rng, images):
    s = self.settings
    k_crop, k_flip = jax.random.split(rng)
    x = augment.random_resized_crop(
      k_crop, images, s.view_size, tuple(s.crop_scale)
    )
    x = augment.normalize(augment.horizontal_flip(k_flip, x))
    x, labels = rotate_batch(x)
    return {'images': x, 'labels': labels}
