"""sspr_jax: self-supervised product recognition in JAX/Flax."""

import importlib.metadata
import os


def _keep_reductions_out_of_ynnpack() -> None:
  """Works around an XLA:CPU miscompile in jaxlib 0.10.2 to 0.11.

  Its YNNPACK fusion of a reduction after a matmul with a constant operand
  reads garbage: `jit(lambda x: jnp.sum(x @ jnp.zeros((128, 10))))` on a
  [512, 128] input gives ~1e17 and a linear head started at zero diverged
  (NaN). Keeping reductions out of that fusion gives exact results (and a
  faster train step here). Must run before JAX creates its CPU client;
  unknown XLA flags abort, so only the versions known to have it get it.

  A `ynn_fusion_type` in the user's XLA_FLAGS is kept. An empty one
  (`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`: no YNNPACK fusions
  at all) also avoids the miscompile and made the train step 8-41 % faster
  (benchmarks/RESULTS.md, 2026-12-03); it is not the default yet because it
  moves the heads' scikit-learn agreement test past its tolerance.
  """
  try:
    version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return
  parts = tuple(int(p) for p in version.split('.')[:3] if p.isdigit())
  flag = '--xla_cpu_experimental_ynn_fusion_type=-reduce'
  flags = os.environ.get('XLA_FLAGS', '')
  if (0, 10, 2) <= parts < (0, 12) and 'ynn_fusion_type' not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} {flag}'.strip()


_keep_reductions_out_of_ynnpack()
