"""Bad-input sweep over both builders: odd photos and annotations are counted
and skipped (or read correctly), never silently lost or half written."""

import io
import pathlib

import numpy as np
import pytest
from PIL import Image

from data_builders.build import build
from sspr_jax.data import pipeline


def _photo(w, h, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 255, (h, w, 3), np.uint8)


def _sku110k(root: pathlib.Path, photos: dict, rows: dict) -> pathlib.Path:
  """photos: name -> bytes; rows: split -> CSV lines."""
  (root / 'SKU110K_fixed' / 'images').mkdir(parents=True)
  (root / 'SKU110K_fixed' / 'annotations').mkdir()
  for name, data in photos.items():
    (root / 'SKU110K_fixed' / 'images' / name).write_bytes(data)
  for split in ('train', 'val', 'test'):
    (
      root / 'SKU110K_fixed' / 'annotations' / f'annotations_{split}.csv'
    ).write_text(''.join(line + '\n' for line in rows.get(split, [])))
  return root


def _encode(array, fmt='PNG', **kw) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt, **kw)
  return buf.getvalue()


def _built(tmp_path, name, manual_dir):
  b = build(
    name,
    config='native',
    manual_dir=manual_dir,
    data_dir=tmp_path / 'tfds',
    num_workers=0,
    encoding='png',
  )
  return b, b.info.metadata['counts']


def test_png_and_exif_rotated_photos_crop_the_stored_pixels(tmp_path):
  png = _photo(40, 30, 1)
  jpeg_src = _photo(40, 30, 2)
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 CW to display": must NOT be applied.
  buf = io.BytesIO()
  Image.fromarray(jpeg_src).save(buf, 'JPEG', quality=100, exif=exif)
  stored = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert('RGB'))
  odd = 'train_0 (copy) ü#.jpg'  # Spaces, unicode, '#' in the file name.
  root = _sku110k(
    tmp_path / 'm',
    {odd: _encode(png), 'train_1.jpg': buf.getvalue()},
    {
      'train': [
        f'{odd},2,3,20,25,object,40,30',
        'train_1.jpg,5,1,35,12,object,40,30',
      ]
    },
  )
  builder, counts = _built(tmp_path, 'sku110k_crops', root)
  assert (
    counts['train']['crops'] == 2 and counts['train']['unreadable_photos'] == 0
  )
  source = pipeline.open_source(
    'sku110k_crops',
    split='train',
    data_dir=tmp_path / 'tfds',
    config='native-encoding_png',
    decode_images=True,
  )
  crops = {
    bytes(ex['origin']).decode(): np.asarray(ex['image']) for ex in source
  }
  np.testing.assert_array_equal(crops['train_0 (copy) ü#'], png[3:25, 2:20])
  np.testing.assert_array_equal(crops['train_1'], stored[1:12, 5:35])


def test_empty_annotation_files_duplicate_boxes_and_a_large_photo(tmp_path):
  big = _photo(6000, 4500, 3)
  root = _sku110k(
    tmp_path / 'm',
    {
      'train_0.jpg': _encode(big, 'JPEG', quality=90),
      'train_1.jpg': _encode(_photo(50, 40)),
    },
    {
      'train': [
        'train_0.jpg,100,200,400,900,object,6000,4500',
        'train_0.jpg,5800,4000,6100,4600,object,6000,4500',
        'train_1.jpg,1,1,20,20,object,50,40',
        'train_1.jpg,1,1,20,20,object,50,40',
      ]
    },
  )  # duplicate
  builder, counts = _built(tmp_path, 'sku110k_crops', root)
  train = counts['train']
  assert train['crops'] == 3
  assert train['skipped_duplicate_boxes'] == 1
  assert train['clipped_boxes'] == 1  # The box reaching past the large photo.
  # Empty annotation files are no error: those splits are left out (logged).
  assert 'val' not in builder.info.splits and 'test' not in builder.info.splits
  assert counts.get('val', {}).get('crops', 0) == 0


def test_rack_duplicate_boxes_are_not_twin_gallery_entries(tmp_path):
  racks = tmp_path / 'racks'
  racks.mkdir()
  Image.fromarray(_photo(60, 40)).save(racks / 'r0.jpg')
  obj = (
    '<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>2</ymin>'
    '<xmax>{}</xmax><ymax>30</ymax></bndbox></object>'
  )
  (racks / 'r0.xml').write_text(
    '<annotation><filename>r0.jpg</filename>'
    + obj.format('cola', 1, 20)
    + obj.format('cola', 1, 20)
    + obj.format('tea', 25, 50)
    + '</annotation>'
  )
  _, counts = _built(tmp_path, 'rack_crops', racks)
  assert counts['train']['crops'] == 2
  assert counts['train']['skipped_duplicate_boxes'] == 1


def test_failed_build_leaves_no_complete_looking_dataset(tmp_path):
  root = _sku110k(
    tmp_path / 'm',
    {'train_0.jpg': _encode(_photo(50, 40))},
    {
      'train': [
        'train_0.jpg,1,1,20,20,object,50,40',
        'train_0.jpg,1,1,twenty,20,object,50,40',
      ]
    },
  )
  with pytest.raises(ValueError, match=r'annotations_train\.csv:2'):
    _built(tmp_path, 'sku110k_crops', root)
  with pytest.raises(FileNotFoundError):
    pipeline.open_source(
      'sku110k_crops',
      split='train',
      data_dir=tmp_path / 'tfds',
      config='native-encoding_png',
    )
