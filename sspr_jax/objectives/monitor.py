"""Collapse monitor for embeddings (as in SimSiam, Chen & He 2021)."""

import jax
import jax.numpy as jnp

from sspr_jax.core.ops import l2_normalize


def embedding_spread(embeddings: jax.Array) -> jax.Array:
  """sqrt(D) * mean over dimensions of the batch std of L2-normalised rows.

  ~1 when the [B, D] embeddings spread like random directions (each
  coordinate of a random unit vector has std 1/sqrt(D)), ~0 when they
  collapse to one vector, ~sqrt(d / D) when only d of the D coordinates vary.
  (A collapse into a rotated low-dim subspace is not detected by this number.)
  """
  z = l2_normalize(embeddings.astype(jnp.float32))
  return jnp.sqrt(z.shape[-1]) * jnp.mean(jnp.std(z, axis=0))
