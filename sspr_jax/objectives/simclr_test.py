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


def test_contrastive_views_follow_the_grayscale_setting():
  """Colour strength 0 keeps a product's colour unless grayscale is drawn."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  from configs import common  # pylint: disable=g-import-not-at-top
  from sspr_jax.data import augment  # pylint: disable=g-import-not-at-top
  from sspr_jax.objectives import base  # pylint: disable=g-import-not-at-top

  red = np.zeros((16, 24, 24, 3), np.uint8)
  red[..., 0] = 200
  batch = {'image': red}
  key = jax.random.key(0)

  def views(**overrides):
    s = common.contrastive_settings(view_size=16, color_strength=0.0)
    s.update(blur_p=0.0, **overrides)
    out = np.asarray(base.contrastive_views(s, key, batch)['images'])
    out = out * augment.IMAGENET_STD + augment.IMAGENET_MEAN  # to [0, 1]
    return out.reshape(-1, 16 * 16, 3).mean(1)  # RGB per view

  gray = views(grayscale_p=1.0)
  np.testing.assert_allclose(gray[:, 0], gray[:, 1], atol=0.01)
  kept = views(grayscale_p=0.0)
  assert (kept[:, 0] > kept[:, 1] + 0.5).all()  # every view stays red
  some = views()  # the default 0.2: some gray, most red
  assert 0 < (np.abs(some[:, 0] - some[:, 1]) < 0.01).sum() < len(some)
  legacy = ml_collections.ConfigDict(
    {
      k: v
      for k, v in common.contrastive_settings().items()
      if k != 'grayscale_p'
    }
  )
  assert 'grayscale_p' not in legacy  # an old run's settings still work
  base.contrastive_views(legacy, key, batch)
