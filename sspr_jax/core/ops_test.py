import jax
import jax.numpy as jnp
import numpy as np

from sspr_jax.core import ops


def test_l2_normalize():
  x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]], np.float32)
  np.testing.assert_allclose(
    ops.l2_normalize(x), [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]], rtol=1e-6
  )


def test_l2_normalize_keeps_the_array_type():
  x = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
  on_host = ops.l2_normalize(x)
  assert isinstance(on_host, np.ndarray) and on_host.dtype == np.float32
  on_device = jax.jit(ops.l2_normalize)(jnp.asarray(x))
  assert isinstance(on_device, jax.Array)
  np.testing.assert_allclose(on_device, on_host, rtol=1e-6)
  np.testing.assert_allclose(
    ops.l2_normalize(x, axis=0), x / np.linalg.norm(x, axis=0), rtol=1e-6
  )
