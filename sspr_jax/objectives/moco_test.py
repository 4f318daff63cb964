import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import common as config_common
from sspr_jax.objectives import moco

REPO = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_infonce(q, k, queue, temperature):
  """Loss and accuracy with explicit loops (float64)."""
  q, k = _unit(q.astype(np.float64)), _unit(k.astype(np.float64))
  losses, hits = [], []
  for i in range(len(q)):
    logits = [q[i] @ k[i]] + [q[i] @ n for n in queue.astype(np.float64)]
    logits = np.array(logits) / temperature
    losses.append(-(logits[0] - np.log(np.sum(np.exp(logits)))))
    hits.append(np.argmax(logits) == 0)
  return np.mean(losses), np.mean(hits)


def test_loss_matches_numpy():
  rng = np.random.default_rng(0)
  q = rng.normal(size=(6, 8)).astype(np.float32)
  k = (q + 0.8 * rng.normal(size=(6, 8))).astype(np.float32)
  queue = moco.init_queue(jax.random.key(0), 32, 8).keys
  loss, metrics = jax.jit(moco.loss_and_metrics)(q, k, queue)
  want_loss, want_accuracy = _np_infonce(q, k, np.asarray(queue), 0.2)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics['accuracy'], want_accuracy)
  logits = moco.infonce_logits(q, k, queue)
  assert logits.shape == (6, 33)


def test_gradient_flows_only_to_queries():
  rng = np.random.default_rng(1)
  q, k = rng.normal(size=(2, 4, 8)).astype(np.float32)
  queue = moco.init_queue(jax.random.key(0), 16, 8).keys
  loss = lambda q, k, queue: moco.loss_and_metrics(q, k, queue)[0]
  grad_q, grad_k, grad_queue = jax.grad(loss, argnums=(0, 1, 2))(q, k, queue)
  assert np.abs(grad_q).max() > 0
  assert np.all(grad_k == 0) and np.all(grad_queue == 0)


def test_init_queue_unit_random_rows():
  queue = moco.init_queue(jax.random.key(0), 64, 16)
  np.testing.assert_allclose(np.linalg.norm(queue.keys, axis=1), 1.0, rtol=1e-6)
  assert queue.pointer == 0
  assert np.abs(np.corrcoef(queue.keys)[np.triu_indices(64, 1)]).max() < 0.95
  np.testing.assert_array_equal(
    queue.keys, moco.init_queue(jax.random.key(0), 64, 16).keys
  )


def test_enqueue_is_a_ring_buffer():
  size, batch, dim = 8, 4, 3
  queue = moco.init_queue(jax.random.key(0), size, dim)
  reference = list(np.asarray(queue.keys))  # row order of the buffer
  step = jax.jit(moco.enqueue)
  rng = np.random.default_rng(0)
  pointer = 0
  for _ in range(5):
    keys = rng.normal(size=(batch, dim)).astype(np.float32)
    queue = step(queue, keys)
    for r in range(batch):
      reference[pointer + r] = keys[r]
    pointer = (pointer + batch) % size
    np.testing.assert_array_equal(queue.keys, np.stack(reference))
    assert int(queue.pointer) == pointer


def test_enqueue_requires_divisible_size():
  queue = moco.init_queue(jax.random.key(0), 10, 3)
  with pytest.raises(ValueError, match='divisible'):
    moco.enqueue(queue, jnp.zeros((4, 3)))


def test_ema_update_matches_formula():
  rng = np.random.default_rng(0)
  key_params = {'w': rng.normal(size=(3, 2)), 'b': {'x': rng.normal(size=2)}}
  query_params = {'w': rng.normal(size=(3, 2)), 'b': {'x': rng.normal(size=2)}}
  key_params, query_params = jax.tree.map(
    lambda a: a.astype(np.float32), (key_params, query_params)
  )
  out = jax.jit(moco.ema_update)(key_params, query_params)
  np.testing.assert_allclose(
    out['w'], 0.999 * key_params['w'] + 0.001 * query_params['w'], rtol=1e-6
  )
  np.testing.assert_allclose(
    out['b']['x'],
    0.999 * key_params['b']['x'] + 0.001 * query_params['b']['x'],
    rtol=1e-6,
  )
  copied = moco.ema_update(key_params, query_params, momentum=0.0)
  np.testing.assert_allclose(copied['w'], query_params['w'])


# Shuffle BN.


class _GroupProbe(nn.Module):
  """A BatchNorm on one value per image; outputs the mean it normalises with.

  With value 2**i for image i, (group size) * output = the bit mask of the
  images that shared the BatchNorm statistics.
  """

  @nn.compact
  def __call__(self, x, train: bool = True):
    v = x.reshape(x.shape[0], -1)[:, :1]
    nn.BatchNorm(use_running_average=not train, momentum=0.9)(v)
    # Flax's BatchNorm reduces over every axis but the feature axis: this.
    mean = jnp.mean(v, axis=0, keepdims=True)
    return v, jnp.broadcast_to(mean, v.shape)


class _TinyNet(nn.Module):
  """Conv -> BN -> ReLU -> mean pool -> Dense: a fast stand-in backbone."""

  @nn.compact
  def __call__(self, x, train: bool = True):
    x = nn.Conv(4, (3, 3), strides=(2, 2), use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    features = jnp.mean(nn.relu(x), axis=(1, 2))
    return features, nn.Dense(8)(features)


def _objective(network, groups, out_dim=8, queue_size=16):
  config = config_common.pretrain_config('moco')
  config.moco = ml_collections.ConfigDict(
    dict(
      hidden_dims=(),
      out_dim=out_dim,
      queue_size=queue_size,
      momentum=0.9,
      temperature=0.2,
      shuffle_bn_groups=groups,
    )
  )
  objective = moco.MoCo(config)
  objective.network = network
  return objective


def _init(objective, x):
  variables = objective.network.init(jax.random.key(0), x[:, 0])
  params, batch_stats = variables['params'], variables['batch_stats']
  return (
    params,
    batch_stats,
    objective.init_extra(jax.random.key(1), params, batch_stats),
  )


def _views(batch, size=8, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(batch, 2, size, size, 3)).astype(np.float32)


def _stats_sets(out, group_size):
  """Per image, the set of images whose statistics normalised it."""
  masks = np.rint(np.asarray(out)[:, 0] * group_size).astype(np.int64)
  return [frozenset(j for j in range(len(out)) if m >> j & 1) for m in masks]


def test_shuffle_bn_query_and_key_never_share_statistics():
  batch, groups = 16, 4
  size = batch // groups
  x = np.broadcast_to(
    2.0 ** np.arange(batch, dtype=np.float32)[:, None, None, None, None],
    (batch, 2, 1, 1, 1),
  )
  for g in (groups, 1):
    objective = _objective(_GroupProbe(), g, out_dim=1)
    params, batch_stats, _ = _init(objective, x)
    encode = jax.jit(objective.encode)
    for seed in range(3):
      _, q, k, _, _ = encode(
        params, batch_stats, params, batch_stats, x, jax.random.key(seed)
      )
      q_sets = _stats_sets(q, batch // g)
      k_sets = _stats_sets(k, batch // g)
      for i in range(batch):
        if g == 1:  # Global BN: the leak, the same statistics.
          assert q_sets[i] == k_sets[i] == frozenset(range(batch))
        else:  # Queries: unpermuted groups; keys: other sets of images.
          first = i // size * size
          assert q_sets[i] == frozenset(range(first, first + size)), i
          assert k_sets[i] != q_sets[i], (seed, i, k_sets[i])
          assert i in k_sets[i], (seed, i, k_sets[i])  # Un-permuted.


def test_shuffle_bn_permutation_depends_only_on_rng():
  x = _views(8)
  objective = _objective(_TinyNet(), 4)
  params, batch_stats, _ = _init(objective, x)
  encode = jax.jit(objective.encode)
  k = [
    encode(params, batch_stats, params, batch_stats, x, jax.random.key(s))[2]
    for s in (0, 0, 1)
  ]
  np.testing.assert_array_equal(k[0], k[1])
  assert np.abs(k[0] - k[2]).max() > 1e-4  # Another permutation, other keys.


def _old_loss(objective, params, batch_stats, extra, x):
  """MoCo.loss before shuffle BN: plain applies over the whole batch."""
  s = objective.settings
  key_params = moco.ema_update(extra['key_params'], params, s.momentum)
  features, q, batch_stats = objective.apply(params, batch_stats, x[:, 0])
  _, k, key_batch_stats = objective.apply(
    key_params, extra['key_batch_stats'], x[:, 1]
  )
  loss, _ = moco.loss_and_metrics(q, k, extra['queue'].keys, s.temperature)
  return loss, (batch_stats, key_params, key_batch_stats, moco.l2_normalize(k))


def test_one_group_is_global_batch_norm():
  x = _views(8)
  objective = _objective(_TinyNet(), 1)
  params, batch_stats, extra = _init(objective, x)
  loss, (_, new_stats, new_extra) = jax.jit(objective.loss)(
    params, batch_stats, extra, {'images': x}, jax.random.key(0)
  )
  want_loss, (want_stats, want_key_params, want_key_stats, want_keys) = jax.jit(
    _old_loss, static_argnums=0
  )(objective, params, batch_stats, extra, x)
  np.testing.assert_array_equal(loss, want_loss)
  jax.tree.map(
    np.testing.assert_array_equal,
    (new_stats, new_extra['key_params'], new_extra['key_batch_stats']),
    (want_stats, want_key_params, want_key_stats),
  )
  np.testing.assert_array_equal(new_extra['queue'].keys[:8], want_keys)
  # The helper itself with one group is a plain apply.
  apply = lambda v: objective.apply(params, batch_stats, v)
  for got, want in zip(
    jax.jit(moco.grouped_apply, static_argnums=(0, 2))(apply, x[:, 0], 1),
    jax.jit(apply)(x[:, 0]),
  ):
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
      got,
      want,
    )


class _BatchNormOnly(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = True):
    return x, nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)


def test_grouped_apply_normalises_per_group_and_averages_statistics():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8, 3)).astype(np.float64) * [1.0, 2.0, 3.0] + 5.0
  old_mean, old_var = rng.normal(size=3), rng.uniform(0.5, 2.0, size=3)
  variables = {
    'params': {'BatchNorm_0': {'scale': np.full(3, 2.0), 'bias': np.ones(3)}},
    'batch_stats': {'BatchNorm_0': {'mean': old_mean, 'var': old_var}},
  }
  variables, x = jax.tree.map(lambda a: a.astype(np.float32), (variables, x))
  network = _BatchNormOnly()

  def apply(v):
    (features, out), updates = network.apply(
      variables, v, mutable=['batch_stats']
    )
    return features, out, updates['batch_stats']

  permutation = np.array([3, 6, 0, 5, 7, 1, 4, 2])
  features, out, new_stats = jax.jit(moco.grouped_apply, static_argnums=(0, 2))(
    apply, x, 2, permutation
  )
  # By hand: groups {3, 6, 0, 5} and {7, 1, 4, 2}, biased variances.
  x64 = x.astype(np.float64)
  want_out = np.empty_like(x64)
  means, variances = [], []
  for members in (permutation[:4], permutation[4:]):
    mean, var = x64[members].mean(0), x64[members].var(0)
    want_out[members] = 2.0 * (x64[members] - mean) / np.sqrt(var + 1e-5) + 1
    means.append(mean)
    variances.append(var)
  np.testing.assert_array_equal(features, x)
  np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    new_stats['BatchNorm_0']['mean'],
    0.9 * old_mean + 0.1 * np.mean(means, axis=0),
    rtol=1e-5,
  )
  np.testing.assert_allclose(
    new_stats['BatchNorm_0']['var'],
    0.9 * old_var + 0.1 * np.mean(variances, axis=0),
    rtol=1e-5,
  )


@pytest.mark.parametrize(
  'groups,problem',
  [
    (3, 'must divide config.batch_size=64'),
    (0, 'must be a positive integer'),
  ],
)
def test_groups_are_checked_against_the_config(groups, problem):
  # MoCo checks its own section when built (the pretrain mode's parse).
  with pytest.raises(
    ValueError, match=rf'config\.moco\.shuffle_bn_groups={groups}: {problem}'
  ):
    _objective(_TinyNet(), groups)


def test_groups_must_divide_the_batch_it_is_given():
  x = _views(8)
  objective = _objective(_TinyNet(), 16)  # Divides config.batch_size, not 8.
  params, batch_stats, extra = _init(objective, x)
  with pytest.raises(
    ValueError,
    match=r'config\.moco\.shuffle_bn_groups=16 must be a positive '
    r'integer dividing the global batch size 8',
  ):
    objective.loss(params, batch_stats, extra, {'images': x}, jax.random.key(0))


def check_shuffle_bn_on_two_devices():
  """MoCo.loss, gradients and new state equal on 1 and 2 devices (G = 4)."""
  from jax.sharding import AxisType, NamedSharding, PartitionSpec

  x = _views(8)
  objective = _objective(_TinyNet(), 4)
  params, batch_stats, extra = _init(objective, x)
  loss = jax.value_and_grad(objective.loss, has_aux=True)
  args = (params, batch_stats, extra, {'images': x}, jax.random.key(3))
  want = jax.jit(loss)(*args)
  for axis_type in (AxisType.Auto, AxisType.Explicit):
    mesh = jax.make_mesh(
      (2,), ('data',), axis_types=(axis_type,), devices=jax.devices()[:2]
    )
    replicated = NamedSharding(mesh, PartitionSpec())
    sharded = jax.device_put(args[:3], replicated) + (
      {'images': jax.device_put(x, NamedSharding(mesh, PartitionSpec('data')))},
      jax.device_put(args[4], replicated),
    )
    with jax.set_mesh(mesh):
      got = jax.jit(loss)(*sharded)
    jax.tree.map(
      lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6),
      got,
      want,
    )


def test_shuffle_bn_on_two_devices():
  if jax.device_count() >= 2:
    check_shuffle_bn_on_two_devices()
    return
  # The device count is fixed when JAX starts: use a child process.
  env = dict(
    os.environ,
    XLA_FLAGS='--xla_force_host_platform_device_count=2',
    PYTHONPATH=REPO,
  )
  code = (
    'from sspr_jax.objectives.moco_test import check_shuffle_bn_on_two_devices;'
    'check_shuffle_bn_on_two_devices()'
  )
  result = subprocess.run(
    [sys.executable, '-c', code],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
  )
  assert result.returncode == 0, result.stderr[-3000:]
