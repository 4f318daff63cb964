"""The train step (state replicated or sharded) and the evaluation embedding
compile for a TPU slice.

libtpu compiles for a TPU topology (here v5e 2x2: 4 chips) on a machine
without a TPU, so CI catches a change that breaks TPU compilation. The
compile runs in a child process that imports libtpu; this process and the
rest of the suite never load it (it would log TPU warnings on every JAX
start). libtpu comes from the `tpu-aot` extra when installed, else the test
installs that pin into a cache folder (`SSPR_LIBTPU_DIR`, default
~/.cache/sspr_jax/) once.
"""

import json
import os
import subprocess
import sys

import pytest

from sspr_jax import testing
from sspr_jax.testing import REPO, child_env

TOPOLOGY = 'v5e:2x2'


@pytest.fixture(scope='module')
def libtpu_dir():
  """'' if libtpu is importable here, else a folder holding it."""
  return testing.libtpu_folder()


def compile_for_topology(topology: str) -> dict:
  """Compiles the tiny SimCLR train step and the embedding for `topology`;
  what the compiled programs say about devices, shardings, FLOPs, memory."""
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from jax.experimental import topologies
  from jax.sharding import Mesh

  from sspr_jax.core import mesh as mesh_lib
  from sspr_jax.evaluate import embed
  from sspr_jax.objectives import build_objective
  from sspr_jax.testing import tiny_config
  from sspr_jax.train import optim
  from sspr_jax.train import trainer

  devices = topologies.get_topology_desc(
    topology_name=topology, platform='tpu'
  ).devices
  mesh = Mesh(np.array(devices), ('data',))
  data = mesh_lib.batch_sharding(mesh)
  config = tiny_config('simclr', batch_size=4 * len(devices))
  objective = build_objective(config)
  schedule = optax.constant_schedule(0.05)
  tx = optim.optimizer(config, schedule)
  batch = {
    'image': jax.ShapeDtypeStruct(
      (config.batch_size, 40, 40, 3), jnp.uint8, sharding=data
    ),
    'size': jax.ShapeDtypeStruct(
      (config.batch_size, 2), jnp.int32, sharding=data
    ),
  }
  specs = lambda tree: sorted({str(s.spec) for s in jax.tree.leaves(tree)})
  result = {}
  for shard in (False, True):  # Replicated, then config.shard_state.
    sharding = trainer.state_sharding(objective, tx, batch, mesh, shard)
    state = jax.eval_shape(
      trainer.make_init(objective, tx, batch, mesh, sharding),
      jax.random.key(0),
    )
    step = trainer.jit_train_step(
      objective, tx, schedule, jax.random.key(1), mesh, sharding
    )
    train = step.lower(state, batch).compile()
    (state_in, batch_in), _ = train.input_shardings
    state_out, _ = train.output_shardings
    result[f'shard_state={shard}'] = {
      'state_in': specs(state_in),
      'state_out': specs(state_out),
      'batch_in': specs(batch_in),
      'train_flops': train.cost_analysis()['flops'],
      'train_temp_bytes': train.memory_analysis().temp_size_in_bytes,
      'argument_bytes': train.memory_analysis().argument_size_in_bytes,
    }

  module = objective.network.backbone
  variables = jax.tree.map(  # The embedding replicates them.
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
    {
      'params': state.params['backbone'],
      'batch_stats': state.batch_stats['backbone'],
    },
  )
  features = embed._features_fn(module, None, mesh)  # pylint: disable=protected-access
  images = jax.ShapeDtypeStruct((2 * len(devices), 32, 32, 3), jnp.uint8)
  embedding = features.lower(variables, images).compile()
  return dict(
    result,
    devices=len(devices),
    kind=devices[0].device_kind,
    platform=devices[0].platform,
    embed_in=specs(embedding.input_shardings[0][1]),
    embed_out=specs(embedding.output_shardings),
  )


def test_train_step_and_embedding_compile_for_a_tpu_slice(libtpu_dir):
  env = child_env()
  if libtpu_dir:
    env['PYTHONPATH'] = os.pathsep.join([libtpu_dir, env['PYTHONPATH']])
  out = subprocess.run(
    [
      sys.executable,
      '-c',
      'import json; from sspr_jax.tpu_compile_test import '
      f'compile_for_topology as c; print(json.dumps(c({TOPOLOGY!r})))',
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['platform'] == 'tpu' and result['devices'] == 4
  assert result['kind'].startswith('TPU v5'), result['kind']
  # One global program: the batch split over the chips, the state
  # replicated, or split with config.shard_state (same FLOPs, less state
  # per chip).
  replicated, sharded = result['shard_state=False'], result['shard_state=True']
  for train in (replicated, sharded):
    assert train['batch_in'] == ["P('data',)"]
    assert train['state_in'] == train['state_out']
    assert train['train_flops'] > 1e6 and train['train_temp_bytes'] > 0
  assert replicated['state_in'] == ['P()']
  assert any('data' in spec for spec in sharded['state_in'])
  assert sharded['argument_bytes'] < 0.6 * replicated['argument_bytes']
  assert result['embed_in'] == result['embed_out'] == ["P('data',)"]
