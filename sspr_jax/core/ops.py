"""Array operations shared across packages (objectives, evaluate)."""

import jax.numpy as jnp
import numpy as np


def l2_normalize(x, axis: int = -1, eps: float = 1e-12):
  """``x / max(|x|_2, eps)`` along ``axis`` (torch's F.normalize): 0 stays 0.

  A numpy array is normalised with numpy, on the host (no device round trip
  for large embedding matrices); anything else (jax arrays, tracers) with
  jax.numpy.
  """
  xp = np if isinstance(x, np.ndarray) else jnp
  return x / xp.maximum(xp.linalg.norm(x, axis=axis, keepdims=True), eps)
