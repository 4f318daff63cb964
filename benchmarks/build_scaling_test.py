"""Smoke test of benchmarks/build_scaling.py: tiny photos, two sizes, in a
child process (it makes itself a subreaper and grain spawns workers)."""

import json
import math
import os
import subprocess
import sys

_PATH = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), 'build_scaling.py'
)
_REPO = os.path.dirname(os.path.dirname(_PATH))


def test_split_counts_sum_and_shares():
  sys.path.insert(0, os.path.dirname(_PATH))
  import build_scaling  # pylint: disable=g-import-not-at-top

  assert build_scaling.split_counts(1000) == dict(train=700, val=50, test=250)
  assert build_scaling.split_counts(2) == dict(train=2)
  for n in (1, 3, 4, 7, 11_762):
    assert sum(build_scaling.split_counts(n).values()) == n


def test_smoke_run(tmp_path):
  out = tmp_path / 'result.json'
  work = tmp_path / 'work'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['PYTHONPATH'] = os.pathsep.join(
    p for p in (_REPO, env.get('PYTHONPATH')) if p
  )
  run = subprocess.run(
    [
      sys.executable,
      _PATH,
      '--photos',
      '3,6',
      '--unique_photos',
      '4',  # N=6 repeats photos
      '--photo_size',
      '400x300',
      '--boxes',
      '4,6',
      '--workers',
      '1',
      '--pipeline_workers',
      '0,1',
      '--pipeline_batch_size',
      '4',
      '--pipeline_batches',
      '2',
      '--repeats',
      '1',
      '--demand',
      '1000,5000',
      '--workdir',
      str(work),
      '--json',
      str(out),
    ],
    cwd=_REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
  result = json.loads(out.read_text())

  rows = result['rows']
  assert [r['photos'] for r in rows] == [3, 6]
  for r in rows:
    assert r['built_photos'] == r['photos']
    assert 0 < r['crops'] <= r['boxes']
    assert r['seconds'] > 0 and r['cpu_seconds'] > 0 and r['s_per_photo'] > 0
    assert r['cpu_complete']
    # The tree's peak (main process and crop workers) is at least the largest
    # process's resident set at the moment it was sampled.
    assert r['peak_pss'] > 0 and r['peak_rss_sum'] >= r['peak_main_rss'] > 0
    assert r['max_process_rss'] > 0 and r['disk_bytes'] > 0
    assert r['archive_bytes'] > 0
  assert rows[0]['time_ratio'] == 1.0 and rows[0]['memory_ratio'] == 1.0
  assert math.isclose(
    rows[1]['time_ratio'], rows[1]['s_per_photo'] / rows[0]['s_per_photo']
  )
  assert rows[1]['memory_ratio'] == rows[1]['peak_pss'] / rows[0]['peak_pss']

  fit = result['fit']
  assert fit['photos'] == 11_762 and fit['boxes'] == 1_730_000
  assert math.isclose(
    fit['seconds'], fit['fixed_s'] + fit['s_per_photo'] * 11_762
  )
  assert fit['disk_bytes'] > 0
  assert result['settings']['gen_seconds'] > 0
  assert not result['settings']['gen_reused']

  pipe = result['pipeline']
  assert [p['workers'] for p in pipe] == [0, 1]
  for p in pipe:
    assert p['images_per_s'] > 0 and p['cpu_ms_per_image'] > 0

  # The printed tables: one row per N and per worker count, one per demand.
  table = [line for line in run.stdout.splitlines() if line.startswith('| ')]
  build_rows = [t for t in table if t.split('|')[1].strip() in ('3', '6')]
  assert len(build_rows) == 2, run.stdout
  assert 'Extrapolated to the real archive' in run.stdout
  assert '| 1,000 |' in run.stdout and '| 5,000 |' in run.stdout
  # Large files are gone; the logs stay in the given workdir.
  assert sorted(p.name for p in work.iterdir()) == [
    'build_3.log',
    'build_6.log',
  ]
