"""benchmarks/aot.py --smoke: the tiny train step and embedding compiled
for a TPU v5e 2x2 slice through libtpu, the largest batch predicted and
confirmed, rows cached and resumed."""

import importlib.util
import json
import os
import subprocess
import sys

from sspr_jax import testing

_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'aot.py')
_spec = importlib.util.spec_from_file_location('aot_bench', _PATH)
aot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(aot)


def test_largest_batch_from_two_compiled_rows():
  gib = 2**30
  rows = [
    {'compiled': True, 'per_chip_batch': 32, 'bytes': {'total': 3 * gib}},
    {'compiled': True, 'per_chip_batch': 64, 'bytes': {'total': 5 * gib}},
  ]
  # 1 GiB fixed + 1/16 GiB an image: 16 GiB fit 240 images.
  assert aot.largest_batch(rows, 16) == 240
  assert aot.largest_batch(rows, 16, cap=128) == 128
  assert aot.largest_batch(rows[:1], 16) is None
  # Not linear in the batch (a smaller one may take more): least squares.
  bumpy = rows + [
    {'compiled': True, 'per_chip_batch': 16, 'bytes': {'total': 4 * gib}}
  ]
  # Fit: 3 GiB fixed + 3/112 GiB an image; 16 GiB fit 485 -> 480.
  assert aot.largest_batch(bumpy, 16) == 480
  falling = [dict(rows[0], bytes={'total': 6 * gib}), rows[1]]
  assert aot.largest_batch(falling, 16) is None


def test_a_predicted_batch_that_does_not_fit_is_halved_towards_a_fit():
  gib = 2**30
  rows = [
    {
      'compiled': True,
      'fits': True,
      'per_chip_batch': 32,
      'bytes': {'total': 3 * gib},
    },
    {
      'compiled': True,
      'fits': True,
      'per_chip_batch': 64,
      'bytes': {'total': 5 * gib},
    },
  ]
  tried = []

  def compile_at(batch):  # Really 1/8 GiB an image: 112 fits, 240 not.
    tried.append(batch)
    return {'per_chip_batch': batch, 'fits': 1 + batch / 8 <= 16}

  row = aot.confirm_largest(compile_at, rows, 16, cap=4096)
  assert tried == [240, 152, 104] and row['per_chip_batch'] == 104
  assert row['predicted_largest']


def test_smoke_compiles_for_a_tpu_slice_and_resumes(tmp_path):
  folder = testing.libtpu_folder()
  env = testing.child_env()
  if folder:
    env['PYTHONPATH'] = os.pathsep.join([folder, env['PYTHONPATH']])
  cache = tmp_path / 'aot.json'
  argv = [sys.executable, _PATH, '--smoke', '--json', str(cache)]
  argv += ['--batches', '4,8', '--states', 'sharded', '--largest']
  argv += ['--max_batch', '64']
  out = subprocess.run(
    argv, env=env, capture_output=True, text=True, timeout=600
  )
  assert out.returncode == 0, out.stderr[-3000:]
  rows = json.loads(cache.read_text())
  train = [r for r in rows if r['program'] == 'train']
  embed = [r for r in rows if r['program'] == 'embed']
  assert all(r['compiled'] and r['chips'] == 4 for r in rows), rows
  assert [r['per_chip_batch'] for r in train[:2]] == [4, 8]
  assert train[1]['flops_per_chip'] > 1.5 * train[0]['flops_per_chip']
  assert train[-1].get('predicted_largest') and train[-1]['fits']
  assert train[-1]['per_chip_batch'] == 64 and len(embed) >= 2
  assert train[0]['ideal_step_s'] > 0 and train[0]['hbm_gib'] == 16
  assert '| train | simclr | v5e:2x2 | 4 | 4 | sharded | yes |' in out.stdout
  # Cached: a rerun compiles nothing and prints the same table.
  again = subprocess.run(
    argv, env=env, capture_output=True, text=True, timeout=600
  )
  assert again.returncode == 0 and 'compiling' not in again.stderr
  assert json.loads(cache.read_text()) == rows
