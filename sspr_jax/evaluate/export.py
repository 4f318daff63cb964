"""A backbone as one function a serving stack can run: uint8 crops in,
L2-normalised embeddings out, evaluation preprocessing included.

`embedding_function` builds it (resize the shorter side to `image_size` and
centre-crop when the input is another size, the backbone's normalisation,
the backbone, L2 normalisation); `stablehlo` serialises it with `jax.export`
for a batch of any size, so `jax.export.deserialize(data).call(images)`
runs it with jax alone, no sspr_jax or Flax code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sspr_jax.core import ops
from sspr_jax.data import augment
from sspr_jax.evaluate import backbone_names


def resize_and_crop(images: jax.Array, image_size: int) -> jax.Array:
  """[B, H, W, 3] -> [B, S, S, 3] float32 in 0-255: the shorter side to S
  (bilinear, antialiased), then the centre S x S; unchanged when H = W = S."""
  _, height, width, _ = images.shape
  x = images.astype(jnp.float32)
  if (height, width) == (image_size, image_size):
    return x
  scale = image_size / min(height, width)
  new_h = max(image_size, round(height * scale))
  new_w = max(image_size, round(width * scale))
  x = jax.image.resize(
    x, (x.shape[0], new_h, new_w, 3), 'bilinear', antialias=True
  )
  top, left = (new_h - image_size) // 2, (new_w - image_size) // 2
  return x[:, top : top + image_size, left : left + image_size]


def embedding_function(backbone: backbone_names.Backbone, image_size: int):
  """uint8 [B, H, W, 3] -> float32 [B, C], L2-normalised, as the evaluate
  mode embeds a crop already at `image_size` (H = W = image_size); other
  sizes are resized in the function."""
  normalize = backbone.normalize or augment.normalize
  variables = jax.tree.map(jnp.asarray, backbone.variables)

  def embed(images):
    x = resize_and_crop(images, image_size)
    # normalize() scales uint8 to 0-1 itself; the float path is 0-255.
    x = normalize(x / 255.0)
    features = backbone.module.apply(variables, x, train=False)
    return ops.l2_normalize(features.astype(jnp.float32))

  return embed


def stablehlo(fn, height: int, width: int) -> bytes:
  """`fn` exported (`jax.export`) for uint8 [batch, height, width, 3], any
  batch, serialised."""
  (batch,) = jax.export.symbolic_shape('batch')
  spec = jax.ShapeDtypeStruct((batch, height, width, 3), np.uint8)
  exported = jax.export.export(jax.jit(fn))(spec)
  return bytes(exported.serialize())
