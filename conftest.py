"""Shared pytest fixtures: tiny generated shelf/rack data and built datasets."""
import os

# Tests that need several devices start a subprocess with XLA_FLAGS set;
# keep the main test process on one CPU device and quiet.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import pytest  # pylint: disable=g-import-not-at-top

TINY_SHELVES = dict(photos_per_split={'train': 2, 'val': 1, 'test': 1},
                    photo_size=(320, 240), boxes_per_photo=(50, 60))
TINY_RACKS = dict(num_photos=6, num_classes=8, photo_size=(320, 240),
                  boxes_per_photo=(50, 60))


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
  build('sku110k_crops', config='128', manual_dir=tiny_raw_data['archive'].parent,
        data_dir=data_dir)
  build('rack_crops', config='native', manual_dir=tiny_raw_data['racks'],
        data_dir=data_dir)
  return data_dir
