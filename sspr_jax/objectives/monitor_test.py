import jax
import numpy as np

from sspr_jax.objectives import monitor


def _np_spread(z):
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  stds = [
    np.sqrt(np.mean((z[:, d] - z[:, d].mean()) ** 2)) for d in range(z.shape[1])
  ]
  return np.sqrt(z.shape[1]) * np.mean(stds)


def test_matches_numpy_and_ignores_row_scale():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(32, 16)).astype(np.float32)
  got = jax.jit(monitor.embedding_spread)(z)
  np.testing.assert_allclose(got, _np_spread(z), rtol=1e-5)
  scales = rng.uniform(0.1, 10, size=(32, 1)).astype(np.float32)
  np.testing.assert_allclose(
    monitor.embedding_spread(z * scales), got, rtol=1e-5
  )


def test_spread_collapsed_and_axis_subspace():
  rng = np.random.default_rng(0)
  spread = rng.normal(size=(1024, 64)).astype(np.float32)
  assert 0.9 < monitor.embedding_spread(spread) <= 1.0
  collapsed = rng.normal(size=(1, 64)) + 1e-4 * rng.normal(size=(1024, 64))
  assert monitor.embedding_spread(collapsed.astype(np.float32)) < 0.01
  subspace = np.zeros((1024, 64), np.float32)
  subspace[:, :16] = rng.normal(size=(1024, 16))
  np.testing.assert_allclose(
    monitor.embedding_spread(subspace), np.sqrt(16 / 64), rtol=0.05
  )
