"""kill -9 at named points of evaluate and recognize, and at a seeded random
moment, then the same command again: the folder holds the previous complete
result, or says it is incomplete, and the rerun gives what an uninterrupted
run gives.

Each command is a real main.py process; SSPR_FAULT names the point where it
SIGKILLs itself (`core.results.fault_point`).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from data_builders import synthetic
from sspr_jax.core import results
from sspr_jax.sweeps import report as sweep_report
from sspr_jax.testing import REPO, child_env, tiny_data


def main(config, workdir, args, fault=None, kill_after=None):
  """main.py's exit code; `kill_after`: SIGKILL it after so many seconds."""
  env = child_env(**({results.FAULT_VARIABLE: fault} if fault else {}))
  argv = [sys.executable, 'main.py', '--config', config, '--workdir']
  child = subprocess.Popen(
    argv + [str(workdir), *args],
    cwd=REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
  )
  try:
    _, err = child.communicate(timeout=kill_after)
  except subprocess.TimeoutExpired:
    child.send_signal(signal.SIGKILL)
    _, err = child.communicate()
  if child.returncode not in (0, -signal.SIGKILL):
    raise AssertionError(err.decode()[-3000:])
  return child.returncode


def outputs(workdir, mode) -> dict:
  """What a result holds, comparable across workdirs: {file: content}."""
  record = results.read(str(workdir))[mode]
  assert record['complete'] is True
  out = {}
  for rel in record['files']:
    path = os.path.join(workdir, rel)
    if rel.endswith('.npz'):
      with np.load(path) as z:
        out[rel] = {k: z[k].tolist() for k in z.files}
    elif rel.endswith(('.json', '.md', '.csv')):
      text = open(path).read().replace(str(workdir), 'WORKDIR')
      text = text.replace(' (cached embeddings)', '')  # A rerun's cache hit.
      out[rel] = json.loads(text) if rel.endswith('.json') else text
      if rel.endswith('summary.json'):  # Its key holds the gallery's mtime.
        del out[rel]['gallery']['cache'], out[rel]['gallery']['cache_reused']
    else:
      out[rel] = os.path.getsize(path) > 0  # Figures, photos: drawn.
  return out


def evaluate_args(tiny_raw_data, tiny_datasets, baselines):
  data = tiny_data(tiny_raw_data, tiny_datasets)
  settings = {f'data.{k}': v for k, v in data.items()}
  settings.update(
    {
      'dataset': str(tiny_datasets),
      'evaluate.baselines': baselines,
      'evaluate.evaluators': 'gallery_map,knn',  # Seconds: no heads to fit.
      'evaluate.image_size': 32,
      'evaluate.batch_size': 16,
    }
  )
  return [f'--config.{k}={v}' for k, v in settings.items()]


@pytest.fixture(scope='module')
def evaluated(tiny_raw_data, tiny_datasets, tmp_path_factory):
  """An evaluation of one baseline (the previous result) and an
  uninterrupted one of two (what every rerun must give), with its time."""
  root = tmp_path_factory.mktemp('faults')
  old_args = evaluate_args(tiny_raw_data, tiny_datasets, 'pixels:8')
  new_args = evaluate_args(tiny_raw_data, tiny_datasets, 'pixels,pixels:8')
  assert main('configs/evaluate.py', root / 'old', old_args) == 0
  start = time.perf_counter()
  assert main('configs/evaluate.py', root / 'reference', new_args) == 0
  seconds = time.perf_counter() - start
  return dict(root=root, old=old_args, new=new_args, seconds=seconds)


def rerun_gives_the_reference(evaluated, workdir):
  assert main('configs/evaluate.py', workdir, evaluated['new']) == 0
  reference = evaluated['root'] / 'reference'
  assert outputs(workdir, 'evaluate') == outputs(reference, 'evaluate')
  assert (workdir / 'config.json').read_text() == (
    reference / 'config.json'
  ).read_text()
  assert not (workdir / '.evaluate.staging').exists()


def killed_over_the_old_result(evaluated, tmp_path, fault):
  """A copy of the previous result, and the new evaluation killed there."""
  workdir = tmp_path / 'run'
  shutil.copytree(evaluated['root'] / 'old', workdir)
  before = outputs(workdir, 'evaluate'), (workdir / 'config.json').read_text()
  code = main('configs/evaluate.py', workdir, evaluated['new'], fault=fault)
  assert code == -signal.SIGKILL
  return workdir, before


def test_killed_while_computing_keeps_the_previous_result(evaluated, tmp_path):
  workdir, (before, config_before) = killed_over_the_old_result(
    evaluated, tmp_path, 'evaluate:first_backbone'
  )
  # The old result, whole, still recorded as the old config's.
  assert outputs(workdir, 'evaluate') == before
  assert (workdir / 'config.json').read_text() == config_before
  assert sweep_report.load(str(workdir))  # A report may still read it.
  rerun_gives_the_reference(evaluated, workdir)


def test_killed_while_moving_files_in_is_marked_incomplete(evaluated, tmp_path):
  workdir, _ = killed_over_the_old_result(
    evaluated, tmp_path, 'results:half_moved'
  )
  assert not results.is_complete(str(workdir), 'evaluate')
  with pytest.raises(sweep_report.MissingMetrics, match='incomplete'):
    sweep_report.load(str(workdir))
  rerun_gives_the_reference(evaluated, workdir)


def test_killed_at_a_random_moment_then_rerun(evaluated, tmp_path):
  # One seeded moment inside the uninterrupted run's time (startup included).
  moment = random.Random(0).uniform(0.2, 1.0) * evaluated['seconds']
  workdir = tmp_path / 'run'
  shutil.copytree(evaluated['root'] / 'old', workdir)
  main('configs/evaluate.py', workdir, evaluated['new'], kill_after=moment)
  entry = results.read(str(workdir))['evaluate']
  if entry['complete']:  # Either result, whole, under its own config.
    old = outputs(evaluated['root'] / 'old', 'evaluate')
    new = outputs(evaluated['root'] / 'reference', 'evaluate')
    assert outputs(workdir, 'evaluate') in (old, new)
  rerun_gives_the_reference(evaluated, workdir)


# --------------------------------------------------------------------------
# recognize: a new run over fewer photos, killed, then run again.


@pytest.fixture(scope='module')
def shelves(tmp_path_factory):
  root = tmp_path_factory.mktemp('shelves')
  racks = dict(num_classes=8, photo_size=(240, 180), boxes_per_photo=(10, 14))
  gallery = synthetic.generate_racks(
    root / 'gallery', seed=0, num_photos=3, **racks
  )
  more = synthetic.generate_racks(root / 'more', seed=0, num_photos=6, **racks)
  photos = {'three': root / 'three', 'two': root / 'two'}
  for name, stems in (('three', (3, 4, 5)), ('two', (3, 4))):
    photos[name].mkdir()
    for i in stems:
      for ext in ('.jpg', '.xml'):
        shutil.copy(more / f'rack_{i}{ext}', photos[name] / f'rack_{i}{ext}')
  return dict(gallery=gallery, photos=photos)


def recognize_args(shelves, photos):
  settings = {
    'recognize.photos': shelves['photos'][photos],
    'recognize.gallery': shelves['gallery'],
    'recognize.backbone': 'pixels',
    'recognize.image_size': 32,
  }
  return [f'--config.{k}={v}' for k, v in settings.items()]


def test_recognize_killed_then_rerun_drops_stale_photos(shelves, tmp_path):
  config = 'configs/recognize.py'
  workdir, reference = tmp_path / 'run', tmp_path / 'reference'
  assert main(config, reference, recognize_args(shelves, 'two')) == 0
  assert main(config, workdir, recognize_args(shelves, 'three')) == 0
  three = outputs(workdir, 'recognize')
  assert 'recognize/annotated/rack_5.jpg' in three
  code = main(
    config,
    workdir,
    recognize_args(shelves, 'two'),
    fault='recognize:written',
  )
  assert code == -signal.SIGKILL
  assert outputs(workdir, 'recognize') == three  # The previous run, whole.
  assert main(config, workdir, recognize_args(shelves, 'two')) == 0
  two = outputs(workdir, 'recognize')
  assert two == outputs(reference, 'recognize')
  # The photo this run did not draw is gone, not left from the last run.
  assert not (workdir / 'recognize' / 'annotated' / 'rack_5.jpg').exists()
