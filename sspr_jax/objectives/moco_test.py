import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sspr_jax.objectives import moco


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
