"""The raw-pixel baseline: an image's own pixels, downsampled, as its embedding.

A learned embedding is only worth something where it beats this: on galleries
of near-identical packages (and on Fashion-MNIST) a few hundred raw pixels
already rank many matches first.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


class Pixels(nn.Module):
  """[B, H, W, 3] -> [B, side * side * 3]: antialiased resize, flattened.

  The input is what the backbones get (ImageNet-normalised pixels), so the
  vectors are centred per channel and cosine similarity compares patterns,
  not brightness.
  """

  side: int = 16

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # Nothing to train.
    x = jax.image.resize(
      x.astype(jnp.float32),
      (x.shape[0], self.side, self.side, x.shape[-1]),
      'linear',
      antialias=True,
    )
    return x.reshape(x.shape[0], -1)
