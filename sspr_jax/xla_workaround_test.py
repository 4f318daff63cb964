"""The XLA:CPU miscompile workaround in sspr_jax/__init__.py."""

import subprocess
import sys

_PROBE = """
import sspr_jax, jax, jax.numpy as jnp, numpy as np
x = jnp.asarray(np.random.default_rng(0).normal(size=(512, 128)), jnp.float32)
zeros = jax.jit(lambda x: jnp.sum(x @ jnp.zeros((128, 10))))(x)
ones = jax.jit(lambda x: jnp.sum(x @ jnp.ones((128, 10))))(x)
print(float(zeros), float(ones), float(10 * jnp.sum(x)))
"""


def test_a_matmul_with_a_constant_then_a_sum_is_exact():
  out = subprocess.run(
    [sys.executable, '-c', _PROBE], capture_output=True, text=True, check=True
  )
  zeros, ones, want = map(float, out.stdout.split())
  assert zeros == 0.0
  assert abs(ones - want) < 1e-3 * abs(want) + 1e-3
