"""MoCo v2 (He et al. 2020; Chen et al. 2020): InfoNCE against a queue of keys.

The query encoder is trained; the key encoder is an exponential moving
average of it (`ema_update`, m = 0.999); keys of past batches wait in a FIFO
queue of K normalised vectors (`Queue`, K = 65,536) and serve as negatives.
Order within a step, as in the MoCo code: loss with the current queue, then
`enqueue` the current keys.

Shuffle BN: BatchNorm in train mode normalises with the statistics of the
images it sees together. Under one global BN the query pass sees view 1 of
the B images and the key pass view 2 of the same B images, while the queue's
keys were normalised with other batches' statistics, so the statistics mark
the positive and the model can "cheat" the pretext task (facebookresearch/
moco issue #46: "SyncBN is not sufficient in the case of MoCo"). As in MoCo,
the key encoder normalises G groups of a randomly permuted key batch (outputs
un-permuted) and the query encoder the same G groups unpermuted, so a query
and its key are normalised over different sets of images. The train step is
one global-view program without per-device statistics, so the groups are
explicit (`grouped_apply`; `SplitBatchNorm` in MoCo's one-GPU demo,
facebookresearch/moco colab/moco_cifar10_demo.ipynb) and the result does
not depend on the device count. G = `config.moco.shuffle_bn_groups`; 1 is
global BN (shortcut open).
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from sspr_jax.core.ops import l2_normalize
from sspr_jax.models import heads
from sspr_jax.objectives import base
from sspr_jax.objectives.common import replicate

TEMPERATURE = 0.2
MOMENTUM = 0.999


class Queue(NamedTuple):
  """Ring buffer of normalised keys (replicated, or split over the devices
  with `config.shard_state`).

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


def grouped_apply(apply_fn, x, groups: int, permutation=None):
  """`apply_fn` with BatchNorm statistics per group of the batch (split BN).

  Args:
    apply_fn: `Objective.apply`-like, x [n, ...] -> (features, out,
      new batch_stats), normalising with the batch statistics of its x.
    x: [B, ...] inputs; B must be divisible by `groups`.
    groups: G; rows [g * B/G, (g + 1) * B/G) of the (permuted) batch form
      group g.
    permutation: optional [B] indices: the groups are taken from
      x[permutation] and the outputs returned in the order of x (shuffle BN).

  Returns:
    (features, out) in the order of x, and the batch_stats of the G groups
    averaged: the EMA is linear, so this is momentum * old + (1 - momentum)
    * (mean of the group statistics), as split BN's running statistics.
  """
  batch = x.shape[0]
  sharding = _group_sharding(x, groups)
  take = lambda a, index: a.at[index].get(out_sharding=sharding)
  if permutation is not None:
    x = take(x, permutation)
  # vmap folds the group axis into the batch of convolutions and matmuls:
  # about the cost of one pass over x.
  shape = (groups, batch // groups) + x.shape[1:]
  features, out, batch_stats = jax.vmap(apply_fn)(
    jnp.reshape(x, shape, out_sharding=sharding)
  )
  features, out = (
    jnp.reshape(a, (batch,) + a.shape[2:], out_sharding=sharding)
    for a in (features, out)
  )
  if permutation is not None:
    inverse = jnp.argsort(permutation)
    features, out = take(features, inverse), take(out, inverse)
  batch_stats = jax.tree.map(lambda a: jnp.mean(a, axis=0), batch_stats)
  return features, out, batch_stats


def _group_sharding(x, groups: int):
  """Out sharding of the [B] and [G, B/G] batches under Explicit mesh axes.

  None under Auto axes (the trainer's) or without a mesh: XLA lays
  out any G. With Explicit axes the groups are split over the devices,
  so G must be a multiple of their count (vmapped convolutions cannot
  reshape a [G, B/G] batch sharded on its second axis).
  """
  sharding = jax.typeof(x).sharding
  axis = sharding.spec[0] if sharding.spec else None
  if axis is None:
    return None
  devices = math.prod(sharding.mesh.shape[a] for a in jax.tree.leaves(axis))
  if groups % devices:
    raise ValueError(
      f'Shuffle BN in {groups} groups on a batch sharded over {devices} '
      'devices with Explicit mesh axes: use a multiple of the device count '
      'or Auto axes.'
    )
  return P(axis)


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

  def __init__(self, config):
    super().__init__(config)
    groups = self.settings.get('shuffle_bn_groups', 1)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
      raise ValueError(
        f'config.moco.shuffle_bn_groups={groups!r}: must be a positive integer.'
      )
    batch = config.get('batch_size')
    if isinstance(batch, int) and batch > 0 and batch % groups:
      raise ValueError(
        f'config.moco.shuffle_bn_groups={groups!r}: must divide '
        f'config.batch_size={batch} (shuffle BN splits the batch into equal '
        'groups).'
      )

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

  def views(self, rng, batch):
    return base.contrastive_views(self.settings, rng, batch, self.normalize)

  def shuffle_bn_groups(self, batch: int) -> int:
    """G from the settings; it must divide the global batch."""
    groups = self.settings.get('shuffle_bn_groups', 1)
    if not isinstance(groups, int) or groups < 1 or batch % groups:
      raise ValueError(
        f'config.moco.shuffle_bn_groups={groups!r} must be a positive integer '
        f'dividing the global batch size {batch}.'
      )
    return groups

  def encode(self, params, batch_stats, key_params, key_batch_stats, x, rng):
    """Query and key passes with shuffle BN (see the module docstring).

    Args:
      x: [B, 2, ...] two views per image; view 0 -> query, view 1 -> key.
      rng: draws the permutation of the key batch.

    Returns:
      (features, q, k, batch_stats, key_batch_stats), rows in image order.
    """
    groups = self.shuffle_bn_groups(x.shape[0])
    query_apply = lambda v: self.apply(params, batch_stats, v)
    key_apply = lambda v: self.apply(key_params, key_batch_stats, v)
    if groups == 1:  # One group sees the whole batch: nothing to permute.
      features, q, batch_stats = query_apply(x[:, 0])
      _, k, key_batch_stats = key_apply(x[:, 1])
    else:
      features, q, batch_stats = grouped_apply(query_apply, x[:, 0], groups)
      permutation = jax.random.permutation(rng, x.shape[0])
      _, k, key_batch_stats = grouped_apply(
        key_apply, x[:, 1], groups, permutation
      )
    return features, q, k, batch_stats, key_batch_stats

  def loss(self, params, batch_stats, extra, views, rng):
    s = self.settings
    # The key encoder moves before computing keys, as in MoCo's forward.
    key_params = jax.lax.stop_gradient(
      ema_update(extra['key_params'], params, s.momentum)
    )
    features, q, k, batch_stats, key_batch_stats = self.encode(
      params,
      batch_stats,
      key_params,
      extra['key_batch_stats'],
      views['images'],
      rng,
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
