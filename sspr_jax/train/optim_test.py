import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from sspr_jax.train import optim


def _config(opt, sch):
  return ml_collections.ConfigDict({'optimizer': opt, 'schedule': sch})


def test_step_schedule_with_warmup_decays_at_absolute_epochs():
  c = _config(
    {'lr': 0.1},
    {
      'name': 'step',
      'warmup_epochs': 2,
      'decay_epochs': [4, 6],
      'decay_factor': 0.1,
    },
  )
  lr = optim.learning_rate(
    c, steps_per_epoch=10, total_steps=80, global_batch=32
  )
  np.testing.assert_allclose(lr(0), 0.0)
  np.testing.assert_allclose(lr(10), 0.05, rtol=1e-6)  # half-way up the ramp
  np.testing.assert_allclose(lr(20), 0.1, rtol=1e-6)
  np.testing.assert_allclose(lr(39), 0.1, rtol=1e-6)
  np.testing.assert_allclose(lr(40), 0.01, rtol=1e-5)
  np.testing.assert_allclose(lr(60), 0.001, rtol=1e-5)


def test_cosine_schedule_scales_by_batch_and_ends_at_zero():
  c = _config(
    {'lr': 0.3, 'scale_lr_by_batch': True},
    {'name': 'cosine', 'warmup_fraction': 0.1},
  )
  lr = optim.learning_rate(
    c, steps_per_epoch=10, total_steps=100, global_batch=512
  )
  np.testing.assert_allclose(
    lr(10), 0.6, rtol=1e-6
  )  # 0.3 * 512 / 256 at the peak
  np.testing.assert_allclose(lr(55), 0.3, rtol=1e-5)  # half-way down the cosine
  np.testing.assert_allclose(lr(100), 0.0, atol=1e-7)


def test_sgd_matches_torch_style_update_and_skips_decay_on_bias():
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}
  grads = {'kernel': jnp.full((2, 2), 0.5), 'bias': jnp.full((2,), 0.5)}
  c = _config(
    {
      'name': 'sgd',
      'lr': 0.1,
      'momentum': 0.9,
      'nesterov': False,
      'weight_decay': 0.01,
    },
    {'name': 'constant'},
  )
  tx = optim.optimizer(c, optax.constant_schedule(0.1))
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  # torch.optim.SGD first step: p - lr * (g + wd * p).
  np.testing.assert_allclose(updates['kernel'], -0.1 * (0.5 + 0.01), rtol=1e-6)
  np.testing.assert_allclose(updates['bias'], -0.1 * 0.5, rtol=1e-6)


def test_lars_trust_ratio_only_on_kernels():
  params = {'kernel': jnp.full((4, 4), 2.0), 'bias': jnp.ones((4,))}
  grads = jax.tree.map(jnp.ones_like, params)
  c = _config(
    {
      'name': 'lars',
      'lr': 1.0,
      'momentum': 0.0,
      'nesterov': False,
      'weight_decay': 0.0,
    },
    {'name': 'constant'},
  )
  tx = optim.optimizer(c, optax.constant_schedule(1.0))
  updates, _ = tx.update(grads, tx.init(params), params)
  # Kernel: scaled by trust 0.001 * |p| / |g| = 0.001 * 2; bias: plain SGD.
  np.testing.assert_allclose(updates['kernel'], -0.002, rtol=1e-5)
  np.testing.assert_allclose(updates['bias'], -1.0, rtol=1e-6)


def test_unknown_names_are_clear_errors():
  with pytest.raises(ValueError, match='schedule.name'):
    optim.learning_rate(
      _config({'lr': 1.0}, {'name': 'poly'}),
      steps_per_epoch=1,
      total_steps=1,
      global_batch=1,
    )
  with pytest.raises(ValueError, match="'sgd', 'lars'"):
    optim.optimizer(
      _config({'name': 'adamw'}, {'name': 'constant'}), lambda s: 1.0
    )
