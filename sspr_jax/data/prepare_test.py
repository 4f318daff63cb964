"""Synthetic data preparation: regenerated photos never meet stale datasets."""

import ml_collections

from configs import common
from sspr_jax.data import pipeline
from sspr_jax.data import prepare


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
