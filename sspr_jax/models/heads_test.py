"""Tests for the pre-training heads."""

import jax
import jax.numpy as jnp
import numpy as np

from sspr_jax.models import heads


def _param_shapes(variables):
  return jax.tree.map(lambda p: p.shape, variables['params'])


def test_linear_head_shape():
  x = jnp.ones((3, 16))
  model = heads.LinearHead(num_outputs=4)
  variables = model.init(jax.random.key(0), x)
  assert model.apply(variables, x).shape == (3, 4)
  assert _param_shapes(variables) == {'fc': {'kernel': (16, 4), 'bias': (4,)}}


def test_projection_head_default_is_linear_relu_linear_2048_2048_128():
  model = heads.ProjectionHead()
  x = jax.ShapeDtypeStruct((2, 2048), jnp.float32)
  variables = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros(x.shape))
  )
  assert set(variables) == {'params'}  # no BatchNorm by default
  assert _param_shapes(variables) == {
    'fc0': {'kernel': (2048, 2048), 'bias': (2048,)},
    'fc1': {'kernel': (2048, 128), 'bias': (128,)},
  }


def test_projection_head_matches_manual_mlp():
  model = heads.ProjectionHead(hidden_dims=(8,), out_dim=4)
  x = jax.random.normal(jax.random.key(1), (5, 6))
  variables = model.init(jax.random.key(0), x)
  p = variables['params']
  expected = (
    jax.nn.relu(x @ p['fc0']['kernel'] + p['fc0']['bias']) @ p['fc1']['kernel']
    + p['fc1']['bias']
  )
  np.testing.assert_allclose(
    model.apply(variables, x), expected, rtol=1e-5, atol=1e-6
  )


def test_projection_head_with_bn_normalises_in_train_mode():
  model = heads.ProjectionHead(
    hidden_dims=(8, 8), out_dim=4, use_bn=True, bn_on_output=True
  )
  x = 5.0 + 3.0 * jax.random.normal(jax.random.key(1), (32, 6))
  variables = model.init(jax.random.key(0), x, train=False)
  assert set(variables['batch_stats']) == {'bn0', 'bn1', 'bn2'}
  out, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  # BN on the output with scale 1, bias 0: per-feature zero mean, unit var.
  np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)
  np.testing.assert_allclose(out.var(0), 1.0, rtol=1e-2)
  assert not np.allclose(updates['batch_stats']['bn0']['mean'], 0.0)


def test_jigsaw_head_shares_tile_mlp_and_concatenates_in_order():
  model = heads.JigsawHead(num_permutations=7, tile_dim=5)
  x = jax.random.normal(jax.random.key(1), (4, 9, 6))
  variables = model.init(jax.random.key(0), x, train=False)
  shapes = _param_shapes(variables)
  assert shapes['tile_fc']['kernel'] == (6, 5)  # one MLP for all tiles
  assert shapes['fc']['kernel'] == (45, 7)
  logits, _ = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert logits.shape == (4, 7)
  # Eval mode (running stats mean 0, var 1): explicit reference.
  p = variables['params']
  tiles = jax.nn.relu(
    (x @ p['tile_fc']['kernel'] + p['tile_fc']['bias'])
    / np.sqrt(1 + 1e-5)
    * p['tile_bn']['scale']
    + p['tile_bn']['bias']
  )
  expected = tiles.reshape(4, 45) @ p['fc']['kernel'] + p['fc']['bias']
  np.testing.assert_allclose(
    model.apply(variables, x, train=False), expected, rtol=1e-4, atol=1e-5
  )
  # Tile order matters: swapping two tiles changes the logits.
  swapped = x[:, jnp.array([1, 0, 2, 3, 4, 5, 6, 7, 8])]
  assert not np.allclose(
    model.apply(variables, swapped, train=False), expected, atol=1e-4
  )
