import os
import subprocess
import sys

import jax
import numpy as np

from sspr_jax.objectives import common


def _np_cross_entropy(logits, labels):
  losses = []
  for row, label in zip(logits.astype(np.float64), labels):
    log_norm = row.max() + np.log(np.sum(np.exp(row - row.max())))
    losses.append(log_norm - row[label])
  return np.mean(losses)


def test_classification_loss_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(16, 7)).astype(np.float32) * 3
  labels = rng.integers(0, 7, size=16)
  loss, metrics = jax.jit(common.classification_loss)(logits, labels)
  np.testing.assert_allclose(loss, _np_cross_entropy(logits, labels), rtol=1e-5)
  want_accuracy = np.mean([row.argmax() == l for row, l in zip(logits, labels)])
  np.testing.assert_allclose(metrics['accuracy'], want_accuracy)


def check_objectives_on_sharded_batch():
  """Global-batch math gives the unsharded results on a 2-device 'data' mesh."""
  from jax.sharding import AxisType, NamedSharding, PartitionSpec
  from sspr_jax.objectives import moco, simclr

  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(2, 8, 16)).astype(np.float32)
  queue = moco.init_queue(jax.random.key(0), 32, 16)
  simclr_value_and_grad = jax.value_and_grad(
    lambda a, b: simclr.loss_and_metrics(a, b)[0], argnums=(0, 1)
  )
  want_simclr = simclr_value_and_grad(z1, z2)
  want_moco = moco.loss_and_metrics(z1, z2, queue.keys)[0]
  want_queue = moco.enqueue(queue, z1)
  for axis_type in (AxisType.Explicit, AxisType.Auto):
    mesh = jax.make_mesh((2,), ('data',), axis_types=(axis_type,))
    batch = NamedSharding(mesh, PartitionSpec('data'))
    s1, s2 = jax.device_put((z1, z2), batch)
    sharded_queue = jax.device_put(queue, NamedSharding(mesh, PartitionSpec()))
    with jax.set_mesh(mesh):
      got_simclr = jax.jit(simclr_value_and_grad)(s1, s2)
      got_moco = jax.jit(moco.loss_and_metrics)(s1, s2, sharded_queue.keys)[0]
      got_queue = jax.jit(moco.enqueue)(sharded_queue, s1)
    jax.tree.map(
      lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6),
      got_simclr,
      want_simclr,
    )
    np.testing.assert_allclose(got_moco, want_moco, rtol=1e-5)
    np.testing.assert_array_equal(got_queue.keys, want_queue.keys)


def test_objectives_on_sharded_batch():
  if jax.device_count() >= 2:
    check_objectives_on_sharded_batch()
    return
  # The device count is fixed when JAX starts: use a child process.
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  code = (
    'from sspr_jax.objectives.common_test import check_objectives_on_sharded_batch;'
    'check_objectives_on_sharded_batch()'
  )
  result = subprocess.run(
    [sys.executable, '-c', code], env=env, capture_output=True, text=True
  )
  assert result.returncode == 0, result.stderr[-3000:]
