"""Tests of benchmarks/fashion_mnist.py: the IDX reader, the PNG folder and
the whole `--smoke` run on a tiny stand-in written in the same format (CI
has no Debian package)."""

import gzip
import importlib.util
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

_PATH = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), 'fashion_mnist.py'
)
_spec = importlib.util.spec_from_file_location('fashion_mnist_bench', _PATH)
fm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fm)

NAMES = ['moco', 'simclr', 'rotnet', 'jigsaw', 'random init', 'raw pixels']


def write_idx(path, array: np.ndarray, gz: bool = True):
  """IDX as LeCun's files: 0, 0, type 0x08 (uint8), ndim, big-endian dims."""
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(
    f'>{array.ndim}I', *array.shape
  )
  data = header + np.ascontiguousarray(array, np.uint8).tobytes()
  with (gzip.open if gz else open)(path, 'wb') as f:
    f.write(data)


def fake_fashion_mnist(folder, train: int = 512, test: int = 256, seed=0):
  """10 classes of 28x28 images: a bar at a class-specific angle and place,
  plus noise, so that the metrics are neither 0 nor 1."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:28, :28] - 13.5
  os.makedirs(folder, exist_ok=True)
  for split, n, prefix in (('train', train, 'train'), ('test', test, 't10k')):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    angle = labels * np.pi / 10 + rng.normal(0, 0.1, n)
    offset = (labels % 3 - 1) * 5 + rng.normal(0, 1, n)
    distance = (
      xx[None] * np.cos(angle)[:, None, None]
      + yy[None] * np.sin(angle)[:, None, None]
      - offset[:, None, None]
    )
    images = 200 * np.exp(-(distance**2) / 8) + rng.normal(
      0, 20, distance.shape
    )
    images = np.clip(images, 0, 255).astype(np.uint8)
    write_idx(folder / f'{prefix}-images-idx3-ubyte.gz', images)
    write_idx(folder / f'{prefix}-labels-idx1-ubyte.gz', labels)


@pytest.mark.parametrize('gz', [True, False])
def test_read_idx_hand_written(tmp_path, gz):
  # 2 images of 2 x 3 pixels, bytes written out by hand.
  data = bytes.fromhex('00000803000000020000000200000003')
  data += bytes(range(12))
  path = tmp_path / ('x.idx.gz' if gz else 'x.idx')
  with (gzip.open if gz else open)(path, 'wb') as f:
    f.write(data)
  array = fm.read_idx(path)
  assert array.dtype == np.uint8 and array.shape == (2, 2, 3)
  np.testing.assert_array_equal(array.ravel(), np.arange(12))
  assert array[1, 0, 2] == 8

  labels = tmp_path / 'y.idx'
  labels.write_bytes(bytes.fromhex('0000080100000003070009'))
  np.testing.assert_array_equal(fm.read_idx(labels), [7, 0, 9])


def test_read_idx_rejects_bad_files(tmp_path):
  short = tmp_path / 'short.idx'
  short.write_bytes(bytes.fromhex('00000801000000040102'))
  with pytest.raises(ValueError, match='needs 4 bytes'):
    fm.read_idx(short)
  other = tmp_path / 'other.idx'
  other.write_bytes(b'PK\x03\x04 not an idx file')
  with pytest.raises(ValueError, match='not an IDX file'):
    fm.read_idx(other)


def test_missing_data_says_how_to_install(tmp_path):
  with pytest.raises(SystemExit) as e:
    fm.main(['--work', str(tmp_path / 'w'), '--data', str(tmp_path), '--smoke'])
  message = str(e.value)
  assert 'apt-get install dataset-fashion-mnist' in message
  assert '\n' not in message and 'train-images-idx3-ubyte.gz' in message


def test_png_folder_written_once(tmp_path):
  images = np.random.default_rng(0).integers(0, 255, (1003, 28, 28), np.uint8)
  folder = tmp_path / 'png'
  fm.write_pngs(images, folder)
  assert sorted(os.listdir(folder)) == ['.complete.json', '0', '1']
  assert len(os.listdir(folder / '1')) == 3
  first = folder / '0' / '0000.png'
  mtime = first.stat().st_mtime_ns
  fm.write_pngs(images, folder)  # Complete: nothing rewritten.
  assert first.stat().st_mtime_ns == mtime
  from PIL import Image

  pixels = np.asarray(Image.open(folder / '1' / '1002.png'))
  assert pixels.shape == (28, 28, 3)
  np.testing.assert_array_equal(pixels[..., 1], images[1002])
  with pytest.raises(SystemExit, match='other images'):
    fm.write_pngs(images[::-1].copy(), folder)


def test_smoke_run_on_stand_in(tmp_path):
  """The command line, as documented, in a child process: it owns its XLA
  flags (JAX reads them once per process), and optimisation level 0 makes
  the compiles of four train steps 4x faster (the smoke run is all compile)."""
  data = tmp_path / 'data'
  fake_fashion_mnist(data)
  work = tmp_path / 'work'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['XLA_FLAGS'] = (
    env.get('XLA_FLAGS', '') + ' --xla_backend_optimization_level=0'
  ).strip()
  run = subprocess.run(
    [sys.executable, _PATH, '--work', str(work), '--data', str(data)]
    + ['--smoke'],
    cwd=os.path.dirname(os.path.dirname(_PATH)),
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]

  root = work / 'smoke'
  results = json.loads((root / 'results.json').read_text())
  assert [r['name'] for r in results['rows']] == NAMES
  for row in results['rows']:
    metrics = row['metrics']
    for key in ('full_map', 'knn_accuracy', 'linear_accuracy'):
      assert math.isfinite(metrics[key]) and 0 <= metrics[key] <= 1, row
  for row in results['rows'][:4]:
    assert row['pretrain']['steps'] == fm.SMOKE['steps']
    assert row['pretrain']['seconds'] > 0
  # The bars make the classes far easier than chance for raw pixels.
  assert results['rows'][-1]['metrics']['linear_accuracy'] > 0.5

  table = [line for line in run.stdout.splitlines() if line.startswith('| ')]
  assert len(table) == 1 + len(NAMES)  # Header + one row each.
  for name, line in zip(NAMES, table[1:]):
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert cells[0] == name
    assert all(math.isfinite(float(c)) for c in cells[2:]), line
  assert 'Goals:' in run.stdout
  assert (root / 'results.md').read_text().count('\n| ') == len(NAMES) + 1
  pngs = [f for _, _, fs in os.walk(root / 'fashion_mnist_train') for f in fs]
  assert sum(f.endswith('.png') for f in pngs) == fm.SMOKE['train_images']
