import jax
import numpy as np
import optax

from sspr_jax.objectives import simclr


def _np_ntxent(z1, z2, temperature):
  """Loss and top-1 accuracy over the 2B views with explicit loops (float64)."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  n, batch = len(z), len(z1)
  losses, hits = [], []
  for i in range(n):
    positive = (i + batch) % n
    others = [k for k in range(n) if k != i]
    sims = {k: z[i] @ z[k] / temperature for k in others}
    losses.append(
      -(sims[positive] - np.log(sum(np.exp(s) for s in sims.values())))
    )
    hits.append(max(others, key=sims.get) == positive)
  return np.mean(losses), np.mean(hits)


def _pairs(seed, batch=5, dim=8, noise=0.7):
  rng = np.random.default_rng(seed)
  z1 = rng.normal(size=(batch, dim)).astype(np.float32)
  z2 = (z1 + noise * rng.normal(size=(batch, dim))).astype(np.float32)
  return z1, z2


def test_matches_numpy_reference():
  z1, z2 = _pairs(0)
  loss, metrics = jax.jit(simclr.loss_and_metrics)(z1, z2)
  want_loss, want_accuracy = _np_ntxent(z1, z2, 0.1)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics['accuracy'], want_accuracy)
  assert 0 < want_accuracy < 1  # the example exercises both outcomes


def test_matches_optax_ntxent():
  z1, z2 = _pairs(1, batch=7, dim=16)
  labels = np.concatenate([np.arange(7), np.arange(7)])
  want = optax.losses.ntxent(np.concatenate([z1, z2]), labels, temperature=0.3)
  loss, _ = simclr.loss_and_metrics(z1, z2, temperature=0.3)
  np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_gradients_finite_and_matching_pairs_score_better():
  z1, z2 = _pairs(2)
  loss_fn = lambda z1, z2: simclr.loss_and_metrics(z1, z2)[0]
  grads = jax.grad(loss_fn, argnums=(0, 1))(z1, z2)
  assert all(np.isfinite(g).all() for g in grads)
  shuffled = z2[np.roll(np.arange(len(z2)), 1)]
  assert loss_fn(z1, z2) < loss_fn(z1, shuffled)
