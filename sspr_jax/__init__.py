"""sspr_jax: self-supervised product recognition in JAX/Flax."""

import importlib.metadata
import os


def _no_ynnpack_fusions() -> None:
  """Keeps XLA:CPU's YNNPACK library fusions off (jaxlib 0.10.2 to 0.11).

  Two reasons. A miscompile: its YNNPACK fusion of a reduction after a
  matmul with a constant operand reads garbage (`jit(lambda x: jnp.sum(x @
  jnp.zeros((128, 10))))` on a [512, 128] input gives ~1e17; a linear head
  started at zero diverged to NaN). And speed: with no YNNPACK fusions the
  convolutions and dots go to XLA's other CPU paths, and the train step
  took 8-41 % less time, side by side in one process, for all four
  objectives at ResNet-18 96 px and ResNet-50 224 px (RESULTS.md, 2026-12-03;
  `train_step.py --variants small_map,no_ynn`). An empty list overrides the
  default set. Must run before JAX creates its CPU client; unknown XLA flags
  abort, so only the versions known to have the flag get it, and a
  `ynn_fusion_type` the user set is kept.
  """
  try:
    version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return
  parts = tuple(int(p) for p in version.split('.')[:3] if p.isdigit())
  flag = '--xla_cpu_experimental_ynn_fusion_type='
  flags = os.environ.get('XLA_FLAGS', '')
  if (0, 10, 2) <= parts < (0, 12) and 'ynn_fusion_type' not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} {flag}'.strip()


_no_ynnpack_fusions()
