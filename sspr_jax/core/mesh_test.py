"""The mesh helpers on two fake CPU devices (a subprocess)."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from sspr_jax.core import mesh as mesh_lib


def test_shard_batch_on_two_cpu_devices():
  script = textwrap.dedent("""
      import numpy as np, jax
      from jax.sharding import PartitionSpec as P
      from sspr_jax.core import mesh as mesh_lib
      assert jax.device_count() == 2, jax.devices()
      mesh = jax.make_mesh((2,), ('data',))
      batch = {'image': np.arange(4 * 3 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3, 3),
               'label': np.array([0, 1, 2, 3], np.int32),
               'origin': np.array([b'a', b'b', b'c', b'd'])}
      out = mesh_lib.shard_batch(batch, mesh)
      assert set(out) == {'image', 'label'}, out.keys()
      for key in out:
        np.testing.assert_array_equal(np.asarray(out[key]), batch[key])
        assert out[key].sharding.spec == P('data'), out[key].sharding
        assert [s.data.shape[0] for s in out[key].addressable_shards] == [2, 2]
      assert out['image'].dtype == np.uint8
      try:
        mesh_lib.shard_batch({'label': np.zeros(3, np.int32)}, mesh)
      except ValueError as e:
        assert "'label'" in str(e), e
      else:
        raise AssertionError('odd batch was split over 2 devices')
      print('OK')
      """)
  env = dict(
    os.environ,
    XLA_FLAGS='--xla_force_host_platform_device_count=2',
    JAX_PLATFORMS='cpu',
  )
  result = subprocess.run(
    [sys.executable, '-c', script],
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith('OK')


def test_per_process_batch():
  assert mesh_lib.per_process_batch(8 * jax.device_count()) == 8 * (
    jax.device_count() // jax.process_count()
  )
  with pytest.raises(ValueError, match='config.batch_size=0'):
    mesh_lib.per_process_batch(0)
