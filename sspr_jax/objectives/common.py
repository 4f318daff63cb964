"""Pieces shared by the objectives: replication and classification loss."""

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec


def replicate(x: jax.Array) -> jax.Array:
  """`x` with every device holding all of it.

  Needed where the whole global batch meets itself (SimCLR's [2B, 2B]
  similarities, MoCo's replicated queue): under a mesh with Explicit axes
  (`jax.make_mesh`'s default) a batch sharded on 'data' must be gathered
  explicitly; under Auto axes or without a mesh XLA does it and `x` is
  returned unchanged.
  """
  if any(axis is not None for axis in jax.typeof(x).sharding.spec):
    return jax.sharding.reshard(x, PartitionSpec())
  return x


def classification_loss(
  logits: jax.Array, labels: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Mean softmax cross-entropy over integer labels, and top-1 accuracy.

  Args:
    logits: [N, C] unnormalised class scores.
    labels: [N] integer classes in [0, C).

  Returns:
    (loss, {'accuracy': ...}), both scalars.
  """
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == labels)
  return loss, {'accuracy': accuracy}
