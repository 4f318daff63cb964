"""Tests for the ResNet backbones."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sspr_jax.models import resnet


def _abstract_variables(model, size=64):
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  return jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), train=False)
  )


def _num_params(variables):
  return sum(
    int(np.prod(p.shape)) for p in jax.tree.leaves(variables['params'])
  )


@pytest.mark.parametrize(
  'name, expected',
  [
    # torchvision totals minus the fc layer (2048*1000+1000, 512*1000+1000).
    ('resnet50', 25_557_032 - 2_049_000),
    ('resnet18', 11_689_512 - 513_000),
    ('resnet34', 21_797_672 - 513_000),
  ],
)
def test_parameter_count_matches_torchvision(name, expected):
  variables = _abstract_variables(resnet.get_backbone(name))
  assert _num_params(variables) == expected


def test_resnet50_output_shape_and_torch_names():
  model = resnet.get_backbone('resnet50')
  x = jnp.zeros((2, 64, 64, 3))
  out = jax.eval_shape(
    lambda: model.init_with_output(jax.random.key(0), x, train=False)[0]
  )
  assert out.shape == (2, 2048) and model.num_features == 2048
  variables = _abstract_variables(model)
  flat = flax.traverse_util.flatten_dict(variables['params'], sep='/')
  assert flat['conv1/kernel'].shape == (7, 7, 3, 64)
  assert flat['layer1_0/conv3/kernel'].shape == (1, 1, 64, 256)
  # v1.5: the stride sits on the 3x3 conv; checked via the downsample path.
  assert flat['layer2_0/downsample_conv/kernel'].shape == (1, 1, 256, 512)
  assert 'layer1_1/downsample_conv/kernel' not in flat
  assert flat['layer4_2/bn3/scale'].shape == (2048,)


def test_torch_state_dict_keys_map_onto_variables():
  variables = _abstract_variables(resnet.get_backbone('resnet18'))
  flat = {
    (c, *k): v
    for c in variables
    for k, v in flax.traverse_util.flatten_dict(variables[c]).items()
  }
  torch_keys = {
    'conv1.weight': (64, 3, 7, 7),
    'bn1.running_var': (64,),
    'layer1.0.conv2.weight': (64, 64, 3, 3),
    'layer3.0.downsample.0.weight': (256, 128, 1, 1),
    'layer3.0.downsample.1.bias': (256,),
    'layer4.1.bn2.running_mean': (512,),
  }
  for key, torch_shape in torch_keys.items():
    collection, path = resnet.torch_key_to_flax_path(key)
    shape = flat[(collection, *path)].shape
    if len(torch_shape) == 4:
      torch_shape = tuple(torch_shape[i] for i in (2, 3, 1, 0))
    assert shape == torch_shape, key
  with pytest.raises(ValueError):
    resnet.torch_key_to_flax_path('fc.weight')


def test_unknown_backbone_names_choices():
  with pytest.raises(ValueError, match='resnet50'):
    resnet.get_backbone('resnet51')


@pytest.fixture(scope='module')
def tiny_setup():
  model = resnet.get_backbone('resnet_tiny')
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
    x
  )
  return model, variables, x


def test_tiny_output_shape_and_finite(tiny_setup):
  model, variables, x = tiny_setup
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert out.shape == (4, model.num_features) == (4, 64)
  assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))


def test_train_mode_uses_batch_stats_and_updates_running_stats(tiny_setup):
  model, variables, x = tiny_setup
  x = 3.0 * x + 1.0
  # Jitted throughout: eager applies compile every op one by one.
  train_out, updates = jax.jit(
    lambda v, x: model.apply(
      v,
      x,
      train=True,
      mutable=['batch_stats', 'intermediates'],
      capture_intermediates=lambda mdl, _: mdl.name == 'conv1',
    )
  )(variables, x)
  conv1_out = updates['intermediates']['conv1']['__call__'][0]
  stats = updates['batch_stats']['bn1']
  # torch momentum 0.1 == Flax 0.9; running stats start at mean 0, var 1.
  np.testing.assert_allclose(
    stats['mean'], 0.1 * conv1_out.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(
    stats['var'], 0.9 + 0.1 * conv1_out.var(axis=(0, 1, 2)), rtol=1e-4
  )
  evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
  eval_out = evaluate(variables, x)
  # Eval mode uses the running stats, not the batch's, so outputs differ; and
  # it treats examples independently while train mode mixes the batch.
  assert not np.allclose(train_out, eval_out, atol=1e-3)
  single = evaluate(variables, x[:1])
  np.testing.assert_allclose(single, eval_out[:1], rtol=1e-4, atol=1e-5)
  single_train, _ = jax.jit(
    lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'])
  )(variables, x[:2])
  assert not np.allclose(single_train, train_out[:2], atol=1e-4)


def test_zero_init_residual_makes_residual_branches_zero(tiny_setup):
  model = resnet.get_backbone('resnet_tiny', zero_init_residual=True)
  x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
    x
  )
  flat = flax.traverse_util.flatten_dict(variables['params'], sep='/')
  last_bn = [k for k in flat if k.endswith('bn2/scale')]
  assert len(last_bn) == 4
  assert all(np.all(flat[k] == 0) for k in last_bn)
  assert np.all(flat['layer1_0/bn1/scale'] == 1)
  # Each block's output must equal relu(shortcut(input)).
  _, state = jax.jit(
    lambda v, x: model.apply(
      v,
      x,
      train=True,
      mutable=['batch_stats', 'intermediates'],
      capture_intermediates=True,
    )
  )(variables, x)
  inter = state['intermediates']
  for stage in range(1, 5):
    block = inter[f'layer{stage}_0']
    np.testing.assert_array_equal(block['bn2']['__call__'][0], 0)
    if stage > 1:  # blocks with a projection shortcut
      np.testing.assert_allclose(
        block['__call__'][0],
        jax.nn.relu(block['downsample_bn']['__call__'][0]),
        atol=1e-6,
      )
  default_variables = tiny_setup[1]  # built without zero_init_residual
  assert np.all(default_variables['params']['layer1_0']['bn2']['scale'] == 1)


def test_bfloat16_compute_with_float32_params():
  model = resnet.get_backbone('resnet_tiny', dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.key(3), (2, 32, 32, 3))
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
    x
  )
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert out.dtype == jnp.bfloat16 and out.shape == (2, 64)
  f32 = resnet.get_backbone('resnet_tiny')
  ref = jax.jit(lambda v, x: f32.apply(v, x, train=False))(variables, x)
  np.testing.assert_allclose(out.astype(jnp.float32), ref, rtol=0.1, atol=0.05)


@pytest.mark.parametrize('shape', [(2, 9, 9, 3), (2, 7, 10, 2), (1, 4, 4, 1)])
def test_max_pool_matches_nn_max_pool_and_torch_gradient(shape):
  x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
  x = np.maximum(x, 0)  # ties (zeros) as after a ReLU
  ref = lambda a: flax.linen.max_pool(a, (3, 3), (2, 2), ((1, 1), (1, 1)))
  y, vjp = jax.vjp(lambda a: resnet.max_pool(a, 3, 2, 1), x)
  np.testing.assert_array_equal(y, ref(x))
  g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
  (dx,) = vjp(g)
  # Expected: each window's gradient goes to its first maximum (row-major),
  # torch's max_pool2d rule.
  expected = np.zeros_like(x)
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
  for b, i, j, c in np.ndindex(*y.shape):
    win = xp[b, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, c]
    r, s = np.unravel_index(np.argmax(win), win.shape)
    expected[b, 2 * i + r - 1, 2 * j + s - 1, c] += g[b, i, j, c]
  np.testing.assert_allclose(dx, expected, rtol=1e-6, atol=1e-6)


def test_fast_max_pool_gives_the_same_network():
  x = jnp.asarray(
    np.random.default_rng(0).standard_normal((2, 32, 32, 3)), jnp.float32
  )
  fast = resnet.get_backbone('resnet_tiny')
  slow = resnet.get_backbone('resnet_tiny', fast_max_pool=False)
  variables = jax.jit(lambda x: fast.init(jax.random.key(0), x, train=False))(x)
  loss = lambda m: lambda v: jnp.sum(m.apply(v, x, train=False) ** 2)
  (a, ga), (b, gb) = (
    jax.jit(jax.value_and_grad(loss(m)))(variables) for m in (fast, slow)
  )
  np.testing.assert_allclose(a, b, rtol=1e-6)
  for u, v in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  'hw, kernel, stride, padding',
  [
    ((2, 2), 3, 1, 1),  # ResNet-50 layer4 on Jigsaw's 64 px tiles
    ((2, 2), 3, 2, 1),  # ResNet-18 layer4's first conv on 27 px tiles
    ((2, 2), 1, 2, 0),  # the strided 1x1 downsample
    ((2, 2), 1, 2, 'SAME'),  # ... as nn.Conv pads it by default
    ((2, 2), 3, 1, 'SAME'),
    ((2, 2), 3, 2, 'VALID'),
    ((1, 1), 3, 1, 1),
    ((1, 1), 1, 1, 0),
    ((2, 1), 3, 1, 1),
    ((4, 4), 3, 2, 1),  # ResNet-50's first layer4 conv on 64 px tiles
    ((4, 4), 3, 1, 1),  # too large: lax's convolution itself
    ((4, 4), 1, 2, 0),  # 1x1: lax's convolution itself
  ],
)
def test_small_map_conv_matches_lax_values_and_gradients(
  hw, kernel, stride, padding
):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((5, *hw, 6)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((kernel, kernel, 6, 7)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((5, 1, 1, 7)), jnp.float32)
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, resnet._NHWC)
  pad = padding if isinstance(padding, str) else ((padding, padding),) * 2

  def run(conv):
    f = lambda x, w: conv(x, w, (stride, stride), pad, dimension_numbers=dn)
    y, vjp = jax.vjp(f, x, w)
    return y, vjp(jnp.broadcast_to(g, y.shape))

  (y, (dx, dw)), (y_ref, (dx_ref, dw_ref)) = (
    run(c) for c in (resnet.small_map_conv, jax.lax.conv_general_dilated)
  )
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, dw_ref, rtol=1e-5, atol=1e-5)


def test_small_map_conv_gives_the_same_network():
  # 16 px ends in 1x1 maps with 2x2 ones before them: the matmul path runs.
  # In float64, as train-mode BN over 3 samples of a 1x1 map amplifies
  # float32 rounding (both paths then differ from the exact value by ~0.4 %).
  with jax.enable_x64(True):
    x = jnp.asarray(
      np.random.default_rng(0).standard_normal((3, 16, 16, 3)), jnp.float64
    )
    kw = dict(dtype=jnp.float64, param_dtype=jnp.float64)
    fast = resnet.get_backbone('resnet_tiny', **kw)
    slow = resnet.get_backbone('resnet_tiny', small_map_conv=False, **kw)
    # Jitted: eager float64 init compiled ~240 ops one by one (26 s).
    variables = jax.jit(lambda k: fast.init(k, x, train=False))(
      jax.random.key(0)
    )

    def loss(m):
      def f(v):
        y, _ = m.apply(v, x, train=True, mutable=['batch_stats'])
        return jnp.sum(y**2)

      return f

    (a, ga), (b, gb) = (
      jax.jit(jax.value_and_grad(loss(m)))(variables) for m in (fast, slow)
    )
    np.testing.assert_allclose(a, b, rtol=1e-10)
    for u, v in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
      np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-10)
    count = lambda m: (
      jax.jit(lambda v: m.apply(v, x, train=False))
      .lower(variables)
      .as_text()
      .count('stablehlo.convolution')
    )
    # resnet_tiny at 16 px: stem 8x8, pool 4x4, stages 4, 2, 1, 1 px; the
    # convs with inputs of <= 2x2 and layer2's 4x4 -> 2x2 3x3 conv (8 of 12)
    # are matmuls.
    assert count(slow) == 12
    assert count(fast) == 4
