"""Synthetic data preparation: regenerated photos never meet stale datasets."""

import subprocess
import sys

import ml_collections
import pytest

from configs import common
from sspr_jax.data import pipeline
from sspr_jax.data import prepare
from sspr_jax.testing import REPO, child_env


def _data(seed):
  data = common.data_config()
  data.update(
    dict(
      seed=seed,
      rack_photos=3,
      num_classes=4,
      shelf_photos=ml_collections.ConfigDict({'train': 1, 'val': 1, 'test': 1}),
    )
  )
  return data


def _count_and_first_crop(workdir):
  source = pipeline.open_source(
    'rack_crops',
    split='train',
    data_dir=prepare.data_dir(_data(0), workdir),
    config='native',
  )
  return len(source), bytes(source[0]['image'])


def test_new_generator_settings_rebuild_the_datasets(tmp_path):
  prepare.build_datasets(_data(0), str(tmp_path), which=('rack_crops',))
  first = _count_and_first_crop(tmp_path)
  prepare.build_datasets(_data(0), str(tmp_path), which=('rack_crops',))
  assert _count_and_first_crop(tmp_path) == first  # Reused as is.
  prepare.build_datasets(_data(1), str(tmp_path), which=('rack_crops',))
  assert _count_and_first_crop(tmp_path) != first  # Seed 1's photos.


def _shared(seed, data_dir):
  data = _data(seed)
  data.data_dir = str(data_dir)
  return data


def test_a_shared_data_dir_is_reused_never_deleted(tmp_path):
  shared = tmp_path / 'shared'
  prepare.build_datasets(
    _shared(0, shared), str(tmp_path / 'a'), ('rack_crops',)
  )
  built = shared / 'rack_crops'
  stamp = sorted((p.name, p.stat().st_mtime_ns) for p in built.rglob('*'))
  # A second run (its own workdir, its photos generated anew) reuses it.
  prepare.build_datasets(
    _shared(0, shared), str(tmp_path / 'b'), ('rack_crops',)
  )
  assert sorted((p.name, p.stat().st_mtime_ns) for p in built.rglob('*')) == (
    stamp
  )
  # Other generator settings: one line, and nothing is deleted.
  with pytest.raises(ValueError) as error:
    prepare.build_datasets(
      _shared(1, shared), str(tmp_path / 'c'), ('rack_crops',)
    )
  assert f"config.data.data_dir='{shared}' holds synthetic datasets" in str(
    error.value
  )
  assert '\n' not in str(error.value)
  assert sorted((p.name, p.stat().st_mtime_ns) for p in built.rglob('*')) == (
    stamp
  )


def test_two_runs_build_one_shared_data_dir_at_once(tmp_path):
  shared = tmp_path / 'shared'
  script = (
    'import sys; from sspr_jax.data import prepare; '
    'from sspr_jax.data.prepare_test import _shared; '
    "prepare.build_datasets(_shared(0, sys.argv[1]), sys.argv[2], ('rack_crops',)); "
    "print('built')"
  )
  runs = [
    subprocess.Popen(
      [sys.executable, '-c', script, str(shared), str(tmp_path / name)],
      cwd=REPO,
      env=child_env(),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for name in ('a', 'b')
  ]
  for run in runs:
    out, err = run.communicate(timeout=600)
    assert run.returncode == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == 'built'
  source = pipeline.open_source(
    'rack_crops', split='train', data_dir=shared, config='native'
  )
  assert len(source) > 0
