"""Tests of `sku110k_crops` on tiny generated SKU110K-like data."""

import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_builders import build as build_lib
from data_builders.sku110k_crops import Sku110kCrops, Sku110kCropsConfig
from data_builders.sku110k_crops import sku110k_crops_dataset_builder as sku

# Photo (width, height) and boxes per photo id; all inside the photo.
PHOTOS = {
  'train_0': ((64, 48), [(0, 0, 20, 30), (10, 5, 64, 48), (30, 20, 45, 29)]),
  'train_1': ((50, 40), [(5, 5, 25, 35), (20, 0, 50, 12)]),
  'val_0': ((40, 56), [(1, 2, 39, 55)]),
  'test_0': ((48, 48), [(4, 4, 16, 40), (16, 4, 44, 20)]),
}


def smooth_photo(width: int, height: int, seed: int) -> np.ndarray:
  """A smooth RGB photo (JPEG keeps it within a few levels)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  channels = [
    127
    + 100
    * np.sin(
      x / rng.uniform(6, 12) + y / rng.uniform(6, 12) + rng.uniform(0, 6)
    )
    for _ in range(3)
  ]
  return np.stack(channels, axis=-1).astype(np.uint8)


def write_jpeg(path: Path, pixels: np.ndarray) -> None:
  Image.fromarray(pixels).save(path, 'JPEG', quality=95)


def csv_rows(photos) -> dict[str, list[str]]:
  rows = {}
  for origin, ((w, h), boxes) in photos.items():
    split = origin.split('_')[0]
    rows.setdefault(split, []).extend(
      f'{origin}.jpg,{x1},{y1},{x2},{y2},object,{w},{h}'
      for x1, y1, x2, y2 in boxes
    )
  return rows


def make_extracted(root: Path, photos=PHOTOS) -> Path:
  """`root/SKU110K_fixed/{images,annotations}` with the photos; returns the JPEG pixels."""
  base = root / 'SKU110K_fixed'
  (base / 'images').mkdir(parents=True)
  (base / 'annotations').mkdir()
  for seed, (origin, ((w, h), _)) in enumerate(photos.items()):
    write_jpeg(base / 'images' / f'{origin}.jpg', smooth_photo(w, h, seed))
  for split, rows in csv_rows(photos).items():
    (base / 'annotations' / f'annotations_{split}.csv').write_text(
      '\n'.join(rows) + '\n'
    )
  return root


def decoded(path: Path) -> np.ndarray:
  return np.asarray(Image.open(path).convert('RGB'))


def read_split(builder, split) -> dict[str, dict]:
  source = builder.as_data_source(split=split)
  examples = [source[i] for i in range(len(source))]
  return {ex['crop_id'].decode(): ex for ex in examples}


def build(manual_dir, data_dir, config='native', num_workers=0, **options):
  return build_lib.build(
    'sku110k_crops',
    config=config,
    manual_dir=manual_dir,
    data_dir=data_dir,
    num_workers=num_workers,
    **options,
  )


def test_extracted_folder_gives_one_exact_crop_per_box(tmp_path):
  manual = make_extracted(tmp_path / 'manual')
  builder = build(manual, tmp_path / 'data', encoding='png')

  assert set(builder.info.splits) == {'train', 'val', 'test'}
  for split in ('train', 'val', 'test'):
    crops = read_split(builder, split)
    expected = {
      f'{origin}_{i}': (origin, box)
      for origin, (_, boxes) in PHOTOS.items()
      if origin.startswith(split)
      for i, box in enumerate(boxes)
    }
    assert set(crops) == set(expected)
    for crop_id, (origin, box) in expected.items():
      ex = crops[crop_id]
      assert ex['origin'].decode() == origin
      assert ex['box'].tolist() == list(box)
      assert ex['crop_index'] == int(crop_id.rsplit('_', 1)[1])
      x1, y1, x2, y2 = box
      photo = decoded(manual / 'SKU110K_fixed' / 'images' / f'{origin}.jpg')
      np.testing.assert_array_equal(ex['image'], photo[y1:y2, x1:x2])
  counts = builder.info.metadata['counts']
  assert counts['train']['crops'] == 5 and counts['train']['photos'] == 2
  assert counts['test']['boxes'] == 2 and counts['val']['clipped_boxes'] == 0
  assert 'tensorflow' not in sys.modules


def test_jpeg_crops_match_the_box_pixels_within_tolerance(tmp_path):
  manual = make_extracted(tmp_path / 'manual')
  builder = build(manual, tmp_path / 'data')
  crops = read_split(builder, 'train')
  photo = decoded(manual / 'SKU110K_fixed' / 'images' / 'train_0.jpg')
  for i, (x1, y1, x2, y2) in enumerate(PHOTOS['train_0'][1]):
    image = crops[f'train_0_{i}']['image']
    assert image.shape == (y2 - y1, x2 - x1, 3)
    assert np.abs(image.astype(int) - photo[y1:y2, x1:x2]).mean() < 4


def test_tar_folder_and_yolo_layouts_give_the_same_crops(tmp_path):
  extracted = make_extracted(tmp_path / 'extracted')
  base = extracted / 'SKU110K_fixed'
  # Archive with the CSVs after the images (forces the CSV pass).
  tar_dir = tmp_path / 'tar'
  tar_dir.mkdir()
  with tarfile.open(tar_dir / sku.ARCHIVE_NAME, 'w:gz') as tar:
    for path in sorted(base.glob('images/*')) + sorted(
      base.glob('annotations/*')
    ):
      tar.add(path, arcname=f'SKU110K_fixed/{path.relative_to(base)}')
  # YOLO layout with the same boxes (6 decimals round back exactly).
  yolo = tmp_path / 'yolo'
  for origin, ((w, h), boxes) in PHOTOS.items():
    split = origin.split('_')[0]
    (yolo / 'images' / split).mkdir(parents=True, exist_ok=True)
    (yolo / 'labels' / split).mkdir(parents=True, exist_ok=True)
    (yolo / 'images' / split / f'{origin}.jpg').write_bytes(
      (base / 'images' / f'{origin}.jpg').read_bytes()
    )
    lines = [
      f'0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} '
      f'{(y2 - y1) / h:.6f}'
      for x1, y1, x2, y2 in boxes
    ]
    (yolo / 'labels' / split / f'{origin}.txt').write_text('\n'.join(lines))

  results = []
  for name, manual, workers in (
    ('folder', extracted, 0),
    ('tar', tar_dir, 2),
    ('yolo', yolo, 0),
  ):
    builder = build(manual, tmp_path / f'data_{name}', num_workers=workers)
    results.append(
      {
        split: {
          cid: (ex['box'].tolist(), ex['image'].tobytes())
          for cid, ex in read_split(builder, split).items()
        }
        for split in ('train', 'val', 'test')
      }
    )
  assert results[0] == results[1] == results[2]
  assert sum(len(r) for r in results[0].values()) == 8


def test_bad_input_is_skipped_clipped_and_counted(tmp_path, caplog):
  photos = {
    'train_0': (
      (40, 30),
      [
        (-5, -2, 20, 20),
        (10, 10, 10, 20),
        (30, 5, 20, 25),
        (1, 1, 3, 20),
        (5, 5, 35, 28),
        (36, 5, 60, 20),
        (45, 0, 50, 10),
      ],
    ),
    'train_1': ((40, 30), [(0, 0, 10, 10)]),  # corrupt
    'train_2': ((40, 30), [(0, 0, 10, 10), (2, 2, 8, 8)]),  # truncated
    'train_3': ((40, 30), [(0, 0, 10, 10)]),  # missing
    'train_4': (
      (99, 99),
      [(0, 0, 10, 10)],
    ),  # CSV size != JPEG size (40x30), grayscale
  }
  manual = make_extracted(tmp_path / 'manual', photos)
  images = manual / 'SKU110K_fixed' / 'images'
  (images / 'train_1.jpg').write_bytes(b'this is not a jpeg')
  data = (images / 'train_2.jpg').read_bytes()
  (images / 'train_2.jpg').write_bytes(data[: len(data) // 2])
  (images / 'train_3.jpg').unlink()
  Image.fromarray(smooth_photo(40, 30, 9)[..., 0]).save(
    images / 'train_4.jpg', quality=95
  )

  builder = build(manual, tmp_path / 'data', min_side=3)
  counts = builder.info.metadata['counts']['train']
  assert counts['clipped_boxes'] == 2  # (-5,-2,..) and (36,5,60,20)
  assert counts['skipped_empty_boxes'] == 2  # zero width, inverted
  assert counts['skipped_outside_boxes'] == 1  # wholly outside the photo
  assert counts['skipped_small_boxes'] == 1  # 2 px wide
  assert counts['unreadable_photos'] == 2 and counts['missing_photos'] == 1
  assert counts['boxes_in_skipped_photos'] == 4
  assert (
    counts['size_mismatch_photos'] == 1
    and counts['converted_to_rgb_photos'] == 1
  )
  assert counts['crops'] == 4 and counts['boxes'] == 12
  crops = read_split(builder, 'train')
  assert set(crops) == {'train_0_0', 'train_0_4', 'train_0_5', 'train_4_0'}
  assert crops['train_0_0']['box'].tolist() == [0, 0, 20, 20]
  assert crops['train_0_5']['box'].tolist() == [36, 5, 40, 20]
  assert crops['train_4_0']['image'].shape == (10, 10, 3)
  log = caplog.text
  assert 'train_1.jpg' in log and 'train_2.jpg' in log and 'train_3.jpg' in log

  # Counts survive a reload from the directory alone.
  reloaded = tfds.builder_from_directory(builder.data_dir)
  assert reloaded.info.metadata['counts']['train'] == counts
  assert 'tensorflow' not in sys.modules


def test_without_clipping_outside_boxes_are_skipped(tmp_path):
  photos = {
    'train_0': ((40, 30), [(-1, 0, 20, 20), (0, 0, 40, 30), (30, 20, 41, 30)])
  }
  builder = build(
    make_extracted(tmp_path / 'manual', photos), tmp_path / 'data', clip=False
  )
  counts = builder.info.metadata['counts']['train']
  assert counts['skipped_outside_boxes'] == 2 and counts['clipped_boxes'] == 0
  assert set(read_split(builder, 'train')) == {'train_0_1'}


def test_shorter_side_configs_resize_crops(tmp_path):
  # train_0 has one large box (its photo is draft-decoded at 1/2 for 128),
  # train_1 small ones (upscaled).
  photos = {
    'train_0': ((640, 400), [(10, 20, 330, 300)]),
    'train_1': ((200, 100), [(20, 10, 70, 90), (0, 0, 200, 30)]),
  }
  manual = make_extracted(tmp_path / 'manual', photos)
  for config, side in (('128', 128), ('256', 256)):
    crops = read_split(
      build(manual, tmp_path / 'data', config=config, allow_upscale=True),
      'train',
    )
    assert len(crops) == 3
    for origin, (_, boxes) in photos.items():
      photo = decoded(manual / 'SKU110K_fixed' / 'images' / f'{origin}.jpg')
      for i, (x1, y1, x2, y2) in enumerate(boxes):
        w, h = x2 - x1, y2 - y1
        expected = (
          (side, round(h * side / w)) if w <= h else (round(w * side / h), side)
        )
        crop = crops[f'{origin}_{i}']
        assert crop['image'].shape == (expected[1], expected[0], 3), (
          config,
          origin,
          i,
        )
        assert crop['box'].tolist() == [x1, y1, x2, y2]
        reference = np.asarray(
          Image.fromarray(photo[y1:y2, x1:x2]).resize(expected, Image.BILINEAR)
        )
        assert np.abs(crop['image'].astype(int) - reference).mean() < 6, (
          config,
          origin,
          i,
        )
  no_upscale = read_split(
    build(manual, tmp_path / 'data', config='128'), 'train'
  )
  assert no_upscale['train_1_0']['image'].shape == (80, 50, 3)
  assert min(no_upscale['train_0_0']['image'].shape[:2]) == 128


def test_custom_config_object(tmp_path):
  manual = make_extracted(tmp_path / 'manual')
  config = Sku110kCropsConfig(
    name='tiny_png', shorter_side=16, encoding='png', min_side=12
  )
  builder = Sku110kCrops(
    data_dir=str(tmp_path / 'data'), config=config, num_workers=0
  )
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
  )
  source = tfds.data_source(
    'sku110k_crops/tiny_png', data_dir=str(tmp_path / 'data')
  )
  images = [source['val'][i]['image'] for i in range(len(source['val']))]
  assert len(images) == 1 and min(images[0].shape[:2]) == 16
  assert (
    builder.info.metadata['counts']['train']['skipped_small_boxes'] == 1
  )  # 15x9 box


@pytest.mark.parametrize(
  'row, message',
  [
    ('train_0.jpg,1,2,3,object,64,48', 'expected 8 columns'),
    ('train_0.jpg,1,2,3.5,4,object,64,48', 'must be integers'),
    ('train_0.jpg,1,2,x,4,object,64,48', 'must be integers'),
  ],
)
def test_malformed_csv_row_names_file_and_line(tmp_path, row, message):
  manual = make_extracted(tmp_path / 'manual')
  csv_path = manual / 'SKU110K_fixed' / 'annotations' / 'annotations_train.csv'
  lines = csv_path.read_text().splitlines()
  csv_path.write_text('\n'.join(lines[:2] + [row] + lines[2:]) + '\n')
  with pytest.raises(ValueError, match=message) as error:
    build(manual, tmp_path / 'data')
  assert f'{csv_path}:3' in str(error.value)


def test_malformed_yolo_line_names_file_and_line():
  with pytest.raises(ValueError, match=r'x\.txt:2'):
    sku.parse_yolo_labels('0 0.5 0.5 0.1 0.1\n0 0.5 0.5\n', 'x.txt')


def test_missing_source_lists_the_layouts(tmp_path):
  with pytest.raises(FileNotFoundError, match='SKU110K_fixed.tar.gz'):
    build(tmp_path, tmp_path / 'data')


def test_cli_prints_summary(tmp_path, capsys):
  manual = make_extracted(tmp_path / 'manual')
  assert (
    build_lib.main(
      [
        'sku110k_crops',
        '--manual_dir',
        str(manual),
        '--data_dir',
        str(tmp_path / 'data'),
        '--config',
        '128',
        '--num_workers',
        '0',
      ]
    )
    == 0
  )
  out = capsys.readouterr().out
  assert 'sku110k_crops/128' in out
  assert (
    'train: 5 crops from 2 photos' in out
    and 'test: 2 crops from 1 photos' in out
  )


def test_synthetic_archive_gives_one_crop_per_csv_row(tmp_path):
  from data_builders.synthetic import generate_shelves, pack_archive

  root = generate_shelves(
    tmp_path / 'gen',
    photos_per_split={'train': 2, 'val': 1, 'test': 1},
    photo_size=(320, 240),
    boxes_per_photo=(10, 20),
    num_workers=0,
  )
  manual = tmp_path / 'manual'
  manual.mkdir()
  pack_archive(root, manual / sku.ARCHIVE_NAME)
  builder = build(manual, tmp_path / 'data', config='128', num_workers=2)
  for split in ('train', 'val', 'test'):
    rows = (
      (root / 'annotations' / f'annotations_{split}.csv')
      .read_text()
      .splitlines()
    )
    crops = read_split(builder, split)
    assert (
      len(crops) == len(rows) == builder.info.metadata['counts'][split]['crops']
    )
    assert {ex['origin'].decode() for ex in crops.values()} == {
      r.split('.')[0] for r in rows
    }
    assert all(
      min(ex['image'].shape[:2]) == min(128, x2 - x1, y2 - y1)
      for ex in crops.values()
      for x1, y1, x2, y2 in [ex['box']]
    )
