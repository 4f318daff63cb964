import jax
import numpy as np
from PIL import Image

from sspr_jax.models import pixels


def test_pixels_are_the_downsampled_image_flattened():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
  out = pixels.Pixels(side=8).apply({}, image[None].astype(np.float32))
  assert out.shape == (1, 8 * 8 * 3)
  # PIL's antialiased bilinear resize, 8-bit rounding aside.
  pil = np.asarray(Image.fromarray(image).resize((8, 8), Image.BILINEAR))
  assert np.abs(out.reshape(8, 8, 3) - pil).max() <= 2.0
  # At the input's size it is the image itself; jittable, no parameters.
  same = jax.jit(lambda x: pixels.Pixels(side=32).apply({}, x))(
    image[None].astype(np.float32)
  )
  np.testing.assert_allclose(same, image.reshape(1, -1), atol=1e-4)
