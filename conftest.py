"""Shared pytest fixtures (tiny generated shelf/rack data and built datasets)
and the `isolated` marker."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

# Tests that need several devices start a subprocess with XLA_FLAGS set;
# keep the main test process on one CPU device and quiet.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

# One persistent XLA compilation cache for the whole test session, which its
# subprocesses (main.py runs, isolated tests, other device counts) inherit:
# many tests compile the same tiny train step (a run and its resumed rerun,
# a killed run and its rerun), and on CI's 2 cores compiles are most of the
# suite's time (with it, test_resumed_run_equals_uninterrupted_run took 9 s
# instead of 22, the failed-checkpoint-write test 17 s instead of 42). The key
# covers the program, the XLA flags and the devices, so a hit is the same
# executable; the folder is new each session and removed after it.
_COMPILE_CACHE = 'JAX_COMPILATION_CACHE_DIR'
_OWN_CACHE = None
if _COMPILE_CACHE not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix='sspr-jax-test-xla-cache-')
  os.environ[_COMPILE_CACHE] = _OWN_CACHE
  # Eager op-by-op compiles (milliseconds) are not worth a file each.
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')

import pytest  # pylint: disable=g-import-not-at-top
from _pytest.reports import TestReport  # pylint: disable=g-import-not-at-top

_IN_ISOLATED_RUN = 'SSPR_JAX_ISOLATED_TEST'


def pytest_unconfigure(config):  # pylint: disable=unused-argument
  if _OWN_CACHE:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def pytest_configure(config):
  config.addinivalue_line(
    'markers', 'isolated: run the test alone in a fresh pytest process.'
  )


def _shorten(text: str, head: int = 15000, tail: int = 5000) -> str:
  # The failing assertion comes first, captured logs after it.
  if len(text) <= head + tail:
    return text
  return f'{text[:head]}\n[... {len(text) - head - tail} characters ...]\n{text[-tail:]}'


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):  # pylint: disable=unused-argument
  """Runs `@pytest.mark.isolated` tests in a child pytest process.

  For tests that inject process-wide faults (RLIMIT_FSIZE) into Orbax writes:
  the failed write's TensorStore callbacks keep firing from C++ threads after
  the test ("Event loop is closed"). Under pytest's unraisable-exception hook
  each one formats a traceback with `ast.parse`, which on Python 3.11 races
  with the main thread's `ast.parse` (cpython gh-106905) and failed a CI run
  with "SystemError: AST constructor recursion depth mismatch". The child
  dies with its threads and reports unraisables with CPython's own hook.
  """
  if item.get_closest_marker('isolated') is None or os.environ.get(
    _IN_ISOLATED_RUN
  ):
    return None
  item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
  basetemp = tempfile.mkdtemp(prefix='isolated-')
  start = time.time()
  try:
    child = subprocess.run(
      [
        sys.executable,
        '-m',
        'pytest',
        '-q',
        '-rs',
        '-p',
        'no:cacheprovider',
        '-p',
        'no:unraisableexception',
        '--basetemp',
        basetemp,
        item.nodeid,
      ],
      cwd=str(item.config.rootpath),
      capture_output=True,
      text=True,
      env=dict(os.environ, **{_IN_ISOLATED_RUN: '1'}),
      check=False,
    )
  finally:
    shutil.rmtree(basetemp, ignore_errors=True)
  output = _shorten(child.stdout) + '\n' + _shorten(child.stderr)
  summary = (
    child.stdout.strip().splitlines()[-1] if child.stdout.strip() else ''
  )
  if child.returncode == 0 and summary.startswith('1 passed'):
    outcome, longrepr = 'passed', None
  elif child.returncode == 0 and summary.startswith('1 skipped'):
    outcome = 'skipped'
    reason = next(
      (
        line.split(': ', 1)[-1]
        for line in child.stdout.splitlines()
        if line.startswith('SKIPPED')
      ),
      'skipped in the isolated run',
    )
    longrepr = (str(item.path), item.location[1] + 1, reason)
  else:
    outcome = 'failed'
    longrepr = f'Isolated run exited with {child.returncode}:\n{output}'
  keywords = {name: 1 for name in item.keywords}
  duration = time.time() - start
  for when in ('setup', 'call', 'teardown'):
    call = when == 'call'  # Setup and teardown ran in the child.
    report = TestReport(
      item.nodeid,
      item.location,
      keywords,
      outcome if call else 'passed',
      longrepr if call else None,
      when,
      duration=duration if call else 0.0,
    )
    item.ihook.pytest_runtest_logreport(report=report)
  item.ihook.pytest_runtest_logfinish(
    nodeid=item.nodeid, location=item.location
  )
  return True


TINY_SHELVES = dict(
  photos_per_split={'train': 2, 'val': 1, 'test': 1},
  photo_size=(320, 240),
  boxes_per_photo=(50, 60),
)
TINY_RACKS = dict(
  num_photos=6, num_classes=8, photo_size=(320, 240), boxes_per_photo=(50, 60)
)


@pytest.fixture(scope='session')
def tiny_raw_data(tmp_path_factory):
  """Generated shelf photos (SKU110K layout, packed) and VOC rack photos."""
  from data_builders import synthetic

  out = tmp_path_factory.mktemp('raw')
  shelves = synthetic.generate_shelves(out / 'sku110k', seed=0, **TINY_SHELVES)
  archive = synthetic.pack_archive(shelves)
  racks = synthetic.generate_racks(out / 'racks', seed=0, **TINY_RACKS)
  return {'shelves': shelves, 'archive': archive, 'racks': racks}


@pytest.fixture(scope='session')
def tiny_datasets(tiny_raw_data, tmp_path_factory):
  """`sku110k_crops` (stored shorter side 128) and `rack_crops` built once."""
  from data_builders.build import build

  data_dir = tmp_path_factory.mktemp('tfds')
  build(
    'sku110k_crops',
    config='128',
    manual_dir=tiny_raw_data['archive'].parent,
    data_dir=data_dir,
  )
  build(
    'rack_crops',
    config='native',
    manual_dir=tiny_raw_data['racks'],
    data_dir=data_dir,
  )
  return data_dir
