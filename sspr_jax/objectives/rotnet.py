"""RotNet (Gidaris et al. 2018): predict which of 4 rotations was applied.

As VISSL's RotNet (`ImgRotatePil`, one rotation per image; the thesis), each
image is shown at one random multiple of 90 degrees; `rotations_per_image=4`
shows every image at all four (the original paper). The head has 4 outputs.
"""

import jax
import jax.numpy as jnp

from sspr_jax.data import augment
from sspr_jax.models import heads
from sspr_jax.objectives import base

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


class RotNet(base.Classification):
  """Views: RandomResizedCrop + h-flip, then the rotation(s); head C -> 4.

  VISSL rotates the raw crop first and flips last. Here the flip comes
  before the rotation, so label k always means "upright turned by k * 90
  degrees" (a flip after a 90-degree turn shows a mirrored 270-degree turn,
  which makes labels 1 and 3 ambiguous for mirror-symmetric products); the
  crop commutes with the rotation in distribution (scale and log-ratio
  ranges are symmetric), so cropping first changes nothing else.
  """

  name = 'rotnet'

  def make_head(self):
    return heads.LinearHead(NUM_CLASSES, dtype=self.dtype)

  def views(self, rng, batch):
    s = self.settings
    k_crop, k_flip, k_rotation = jax.random.split(rng, 3)
    x = augment.random_resized_crop(
      k_crop,
      batch['image'],
      s.view_size,
      tuple(s.crop_scale),
      valid_size=batch.get('size'),
    )
    x = self.normalize(augment.horizontal_flip(k_flip, x))
    per_image = s.get('rotations_per_image', 1)
    if per_image == 4:
      x, labels = rotate_batch(x)
    elif per_image == 1:
      labels = jax.random.randint(
        k_rotation, x.shape[:1], 0, NUM_CLASSES, jnp.int32
      )
      x = augment.rotate90(x, labels)
    else:
      raise ValueError(
        f'rotnet.rotations_per_image must be 1 or 4, got {per_image}.'
      )
    return {'images': x, 'labels': labels}
