"""MoCo v2 (He et al. 2020; Chen et al. 2020): InfoNCE against a queue of keys.

The query encoder is trained; the key encoder is an exponential moving
average of it (`ema_update`, m = 0.999); keys of past batches wait in a FIFO
queue of K normalised vectors (`Queue`, K = 65,536) and serve as negatives.
Order within a step, as in the MoCo code: loss with the current queue, then
`enqueue` the current keys.

BN leaking: MoCo shuffles samples across GPUs before the key encoder's
BatchNorm so that a query and its key never share batch statistics (which
would let the model "cheat" the pretext task). Here a train step is one
global-view `jit` program over the whole batch sharded on the 'data' mesh
axis, so BatchNorm mean/variance are reduced over the WHOLE global batch -
the "global BN" alternative named in the MoCo paper and used by SimCLR.
Per-device statistics never exist, so there is nothing to shuffle.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from sspr_jax.models import heads
from sspr_jax.objectives import base
from sspr_jax.objectives.common import l2_normalize, replicate

TEMPERATURE = 0.2
MOMENTUM = 0.999
QUEUE_SIZE = 65536


class Queue(NamedTuple):
  """Ring buffer of normalised keys, replicated on every device.

  `pointer` is the row where the next batch goes.
  """

  keys: jax.Array  # [K, D]
  pointer: jax.Array  # int32 scalar


def init_queue(rng: jax.Array, size: int, dim: int) -> Queue:
  """Random unit vectors (as in the MoCo code: randn, then normalise)."""
  keys = l2_normalize(jax.random.normal(rng, (size, dim), jnp.float32))
  return Queue(keys=keys, pointer=jnp.zeros((), jnp.int32))


def enqueue(queue: Queue, keys: jax.Array) -> Queue:
  """Writes the keys of the whole global batch at the pointer, oldest out.

  Args:
    queue: current queue, K rows.
    keys: [B, D] normalised keys of the global batch; K must be divisible by
      B so a batch never wraps around the end (checked at trace time).

  Returns:
    The new queue; pointer advances by B modulo K.
  """
  size = queue.keys.shape[0]
  batch = keys.shape[0]
  if size % batch:
    raise ValueError(
      f'MoCo queue size {size} must be divisible by the global batch size {batch}.'
    )
  # The queue is replicated: every device gets the keys of the global batch.
  keys = replicate(jax.lax.stop_gradient(keys).astype(queue.keys.dtype))
  new_keys = jax.lax.dynamic_update_slice(queue.keys, keys, (queue.pointer, 0))
  return Queue(keys=new_keys, pointer=(queue.pointer + batch) % size)


def ema_update(key_params, query_params, momentum: float = MOMENTUM):
  """key <- momentum * key + (1 - momentum) * query, leaf by leaf.

  Only parameters follow the EMA; the key encoder's BatchNorm running
  statistics come from its own forward passes (as in MoCo).
  """
  return optax.incremental_update(
    query_params, key_params, step_size=1.0 - momentum
  )


def infonce_logits(
  queries: jax.Array,
  keys: jax.Array,
  queue_keys: jax.Array,
  temperature: float = TEMPERATURE,
) -> jax.Array:
  """[B, 1 + K] logits: column 0 = q.k (positive), then q.queue (negatives).

  Queries and keys are L2-normalised here; keys get a stop-gradient (the key
  encoder is not trained by backprop); queue entries are used as stored.
  """
  q = l2_normalize(queries)
  k = jax.lax.stop_gradient(l2_normalize(keys))
  positive = jnp.sum(q * k, axis=-1, keepdims=True)
  negatives = q @ jax.lax.stop_gradient(queue_keys).T
  return jnp.concatenate([positive, negatives], axis=1) / temperature


def loss_and_metrics(
  queries: jax.Array,
  keys: jax.Array,
  queue_keys: jax.Array,
  temperature: float = TEMPERATURE,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """InfoNCE (cross-entropy with label 0) and top-1 accuracy of the positive.

  Args:
    queries: [B, D] query-encoder projections.
    keys: [B, D] key-encoder projections of the other view of each image.
    queue_keys: [K, D] the queue (`Queue.keys`).
    temperature: softmax temperature (MoCo v2: 0.2).
  """
  logits = infonce_logits(queries, keys, queue_keys, temperature)
  labels = jnp.zeros(logits.shape[0], jnp.int32)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == 0)
  return loss, {'accuracy': accuracy}


class MoCo(base.Objective):
  """Query encoder trained; key encoder = EMA of it; queue of past keys.

  `extra` holds the key encoder's params and BN statistics and the queue.
  """

  name = 'moco'

  def make_head(self):
    s = self.settings
    return heads.ProjectionHead(
      tuple(s.hidden_dims), s.out_dim, dtype=self.dtype
    )

  def init_extra(self, rng, params, batch_stats):
    # The key encoder starts as a copy of the query encoder (as in MoCo).
    return {
      'key_params': params,
      'key_batch_stats': batch_stats,
      'queue': init_queue(rng, self.settings.queue_size, self.settings.out_dim),
    }

  def views(self, rng, images):
    return base.contrastive_views(self.settings, rng, images)

  def loss(self, params, batch_stats, extra, views, rng):
    del rng
    s = self.settings
    x = views['images']
    # The key encoder moves before computing keys, as in MoCo's forward.
    key_params = jax.lax.stop_gradient(
      ema_update(extra['key_params'], params, s.momentum)
    )
    features, q, batch_stats = self.apply(params, batch_stats, x[:, 0])
    _, k, key_batch_stats = self.apply(
      key_params, extra['key_batch_stats'], x[:, 1]
    )
    k = jax.lax.stop_gradient(k)
    loss, metrics = loss_and_metrics(q, k, extra['queue'].keys, s.temperature)
    metrics['spread'] = self.spread(features)
    extra = {
      'key_params': key_params,
      'key_batch_stats': key_batch_stats,
      'queue': enqueue(extra['queue'], l2_normalize(k)),
    }
    return loss, (metrics, batch_stats, extra)
