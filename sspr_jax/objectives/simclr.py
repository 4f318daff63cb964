"""SimCLR (Chen et al. 2020): NT-Xent over the whole global batch.

The 2B views are z = [z1; z2]; view i's positive is its pair (i + B mod 2B)
and its negatives are the other 2B - 2 views; the loss is the mean over all
2B views of softmax cross-entropy on cosine similarity / T (T = 0.1). In a
global-view `jit` the [2B, 2B] similarity matrix spans all devices, the
equivalent of SimCLR's cross-replica gathering. Same value as
`optax.losses.ntxent(z, labels=[0..B-1, 0..B-1], temperature)`, which does
not give the logits needed for accuracy.
"""

import jax
import jax.numpy as jnp
import optax

from sspr_jax.core.ops import l2_normalize
from sspr_jax.models import heads
from sspr_jax.objectives import base
from sspr_jax.objectives.common import replicate

TEMPERATURE = 0.1


def ntxent_logits(
  z1: jax.Array, z2: jax.Array, temperature: float = TEMPERATURE
) -> tuple[jax.Array, jax.Array]:
  """Masked similarity logits and positive indices.

  Args:
    z1: [B, D] projections of the first views.
    z2: [B, D] projections of the second views, row i pairs with z1[i].
    temperature: softmax temperature.

  Returns:
    (logits [2B, 2B], positives [2B] int32): cosine similarities / T with the
    diagonal (a view with itself) masked out, and each row's positive column.
  """
  batch = z1.shape[0]
  z = l2_normalize(jnp.concatenate([z1, z2], axis=0))
  # Rows stay sharded like the batch; the columns need every view.
  logits = (z @ replicate(z).T) / temperature
  # A very negative finite value instead of -inf keeps gradients free of NaN.
  self_mask = jnp.eye(2 * batch, dtype=bool)
  logits = jnp.where(self_mask, jnp.finfo(logits.dtype).min, logits)
  positives = (jnp.arange(2 * batch, dtype=jnp.int32) + batch) % (2 * batch)
  return logits, positives


def loss_and_metrics(
  z1: jax.Array, z2: jax.Array, temperature: float = TEMPERATURE
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """NT-Xent loss and top-1 contrastive accuracy (positive ranked first)."""
  logits, positives = ntxent_logits(z1, z2, temperature)
  loss = optax.softmax_cross_entropy_with_integer_labels(
    logits, positives
  ).mean()
  accuracy = jnp.mean(jnp.argmax(logits, axis=-1) == positives)
  return loss, {'accuracy': accuracy}


class SimCLR(base.Objective):
  """Two views of every image in one forward pass (global BN over 2B views)."""

  name = 'simclr'

  def make_head(self):
    s = self.settings
    return heads.ProjectionHead(
      tuple(s.hidden_dims),
      s.out_dim,
      use_bn=s.get('head_bn', False),
      dtype=self.dtype,
    )

  def views(self, rng, batch):
    return base.contrastive_views(self.settings, rng, batch, self.normalize)

  def loss(self, params, batch_stats, extra, views, rng):
    del rng
    features, z, batch_stats = self.apply(params, batch_stats, views['images'])
    loss, metrics = loss_and_metrics(
      z[:, 0], z[:, 1], self.settings.temperature
    )
    metrics['spread'] = self.spread(features)
    return loss, (metrics, batch_stats, extra)
