"""Tests of `image_folder` on tiny generated folders of images."""

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from data_builders import build as build_lib
from data_builders.image_folder import image_folder_dataset_builder as folder
from sspr_jax.data import pipeline


def pixels(width: int, height: int, seed: int) -> np.ndarray:
  """A smooth image (JPEG keeps it within a few levels), distinct per seed."""
  y, x = np.mgrid[0:height, 0:width]
  return np.stack(
    [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1)]
    + [np.full_like(x, seed * 37 % 256)],
    axis=-1,
  ).astype(np.uint8)


def save(path: Path, width: int, height: int, seed: int, fmt: str) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels(width, height, seed)).save(path, fmt)
  return path


def truncated_jpeg(path: Path) -> None:
  buffer = io.BytesIO()
  Image.fromarray(pixels(64, 64, 9)).save(buffer, 'JPEG')
  path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])


# Relative path -> (width, height, seed, format) of the good images.
GOOD = {
  'a.png': (40, 30, 0, 'PNG'),
  'nested/c.PNG': (20, 25, 1, 'PNG'),
  'nested/deeper/b.JPG': (50, 20, 2, 'JPEG'),
  'shelf 3/ü photo.jpeg': (33, 17, 3, 'JPEG'),
  'dup/x.jpg': (16, 16, 4, 'JPEG'),
  'dup/x.png': (18, 12, 5, 'PNG'),
}


def make_folder(root: Path) -> Path:
  """GOOD plus 3 undecodable files, 3 ignored files and a dangling link."""
  for name, (w, h, seed, fmt) in GOOD.items():
    save(root / name, w, h, seed, fmt)
  truncated_jpeg(root / 'nested' / 'corrupt.jpg')
  (root / 'empty.png').write_bytes(b'')
  (root / 'nested' / 'notes.jpg').write_text('not an image\n')
  (root / 'readme.txt').write_text('my photos\n')
  (root / 'nested' / 'deeper' / 'boxes.csv').write_text('1,2,3,4\n')
  (root / '.DS_Store').write_bytes(b'\0\0\0\1Bud1')
  (root / '.cache').mkdir()  # hidden folders are not entered
  save(root / '.cache' / 'thumb.png', 4, 4, 0, 'PNG')
  os.symlink(root / 'gone.jpg', root / 'nested' / 'link.jpg')
  os.symlink(root, root / 'nested' / 'loop')  # not followed twice
  return root


def build(manual_dir, data_dir, config='native', **options):
  return build_lib.build(
    'image_folder',
    config=config,
    manual_dir=manual_dir,
    data_dir=data_dir,
    num_workers=0,
    **options,
  )


def read(data_dir, split='train', config='native') -> dict[str, dict]:
  source = pipeline.open_source(
    'image_folder', split=split, data_dir=data_dir, config=config
  )
  examples = {}
  for ex in (source[i] for i in range(len(source))):
    ex = dict(ex, image=np.asarray(Image.open(io.BytesIO(ex['image']))))
    examples[ex['crop_id'].decode()] = ex
  return examples


def test_walk_order_origins_and_crop_indices(tmp_path):
  manual = make_folder(tmp_path / 'photos')
  source = folder.find_source(manual)
  tasks = list(source.tasks())
  # The undecodable files and the dangling link are tasks too (the workers
  # count them); the link back to the root is not entered.
  assert source.splits == ['train'] and source.num_photos == len(tasks) == 10
  # Sorted by path component.
  assert [(t.origin, t.crop_indices[0]) for t in tasks] == [
    ('a', 0),
    ('dup/x', 0),
    ('dup/x', 1),
    ('empty', 0),
    ('nested/c', 0),
    ('nested/corrupt', 0),
    ('nested/deeper/b', 0),
    ('nested/link', 0),
    ('nested/notes', 0),
    ('shelf 3/ü photo', 0),
  ]
  assert source.extra_counts['train']['ignored_files'] == 3


def test_nested_folder_builds_and_reads_back(tmp_path):
  manual = make_folder(tmp_path / 'photos')
  # A good image whose name is latin-1, not UTF-8: it cannot be stored as
  # text, so it is skipped and counted, and the build goes on.
  bad_name = os.path.join(os.fsencode(manual), b'caf\xe9.jpg')
  Image.fromarray(pixels(20, 20, 7)).save(bad_name, 'JPEG')
  builder = build(manual, tmp_path / 'data')
  counts = builder.info.metadata['counts']
  assert list(counts) == ['train']
  train = counts['train']
  assert train['crops'] == train['photos'] == len(GOOD)
  # Truncated, zero bytes, text, the latin-1 name.
  assert train['unreadable_photos'] == 4
  assert train['missing_photos'] == 1  # the dangling link
  assert train['ignored_files'] == 3  # .txt, .csv, .DS_Store
  examples = read(tmp_path / 'data')
  expected_ids = {
    f'{Path(name).with_suffix("").as_posix()}_{int(name == "dup/x.png")}'
    for name in GOOD
  }
  assert set(examples) == expected_ids
  for name, (w, h, seed, fmt) in GOOD.items():
    origin = Path(name).with_suffix('').as_posix()
    ex = examples[f'{origin}_{int(name == "dup/x.png")}']
    assert ex['origin'].decode() == origin
    assert ex['box'].tolist() == [0, 0, w, h]
    assert ex['image'].shape == (h, w, 3)
    decoded = np.asarray(Image.open(manual / name).convert('RGB'), int)
    error = np.abs(ex['image'] - decoded).mean()
    assert error < 2, (name, error)  # re-encoded as JPEG by the native config
  assert 'tensorflow' not in sys.modules


def test_png_encoding_keeps_pixels_and_exif_orientation_is_applied(tmp_path):
  manual = tmp_path / 'photos'
  save(manual / 'flat.png', 12, 10, 1, 'PNG')
  stored = pixels(40, 30, 2)
  exif = Image.Exif()
  exif[0x0112] = 6  # shown rotated 90 degrees clockwise
  Image.fromarray(stored).save(manual / 'phone.jpg', quality=95, exif=exif)
  builder = build(manual, tmp_path / 'data', encoding='png')
  assert builder.info.metadata['counts']['train']['exif_oriented_photos'] == 1
  examples = read(tmp_path / 'data', config='native-encoding_png')
  np.testing.assert_array_equal(examples['flat_0']['image'], pixels(12, 10, 1))
  upright = ImageOps.exif_transpose(Image.open(manual / 'phone.jpg'))
  assert upright.size == (30, 40)
  np.testing.assert_array_equal(
    examples['phone_0']['image'], np.asarray(upright.convert('RGB'))
  )
  # The box stays in stored pixels, as in the annotated builders.
  assert examples['phone_0']['box'].tolist() == [0, 0, 40, 30]
  # JPEG output (decoded in YCbCr, no RGB round trip) is turned too.
  build(manual, tmp_path / 'data')
  assert read(tmp_path / 'data')['phone_0']['image'].shape == (40, 30, 3)


def test_split_folders_are_the_splits(tmp_path):
  manual = tmp_path / 'photos'
  save(manual / 'train' / 'a.jpg', 20, 10, 0, 'JPEG')
  save(manual / 'train' / 'shelf' / 'b.png', 10, 20, 1, 'PNG')
  save(manual / 'val' / 'a.jpg', 15, 15, 2, 'JPEG')
  (manual / 'val' / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
  save(manual / 'loose.jpg', 8, 8, 3, 'JPEG')  # beside the splits: not read
  builder = build(manual, tmp_path / 'data')
  assert set(builder.info.splits.keys()) == {'train', 'val'}
  counts = builder.info.metadata['counts']
  assert counts['train']['crops'] == 2 and counts['train']['ignored_files'] == 0
  assert counts['val']['crops'] == 1 and counts['val']['unreadable_photos'] == 1
  assert set(read(tmp_path / 'data')) == {'train/a_0', 'train/shelf/b_0'}
  val = read(tmp_path / 'data', split='val')
  assert list(val) == ['val/a_0'] and val['val/a_0']['image'].shape == (
    15,
    15,
    3,
  )


def test_config_128_only_shrinks(tmp_path):
  manual = tmp_path / 'photos'
  save(manual / 'big.png', 300, 200, 0, 'PNG')
  save(manual / 'tall.jpg', 130, 400, 1, 'JPEG')
  save(manual / 'small.png', 60, 40, 2, 'PNG')
  build(manual, tmp_path / 'data', config='128')
  sizes = {
    cid: ex['image'].shape[:2]
    for cid, ex in read(tmp_path / 'data', config='128').items()
  }
  assert sizes == {
    'big_0': (128, 192),
    'tall_0': (394, 128),
    'small_0': (40, 60),
  }


def test_cli_builds_and_prints_counts(tmp_path, capsys):
  manual = tmp_path / 'photos'
  save(manual / 'x' / 'a.jpg', 20, 10, 0, 'JPEG')
  save(manual / 'b.PNG', 10, 20, 1, 'PNG')
  (manual / 'c.jpeg').write_bytes(b'')
  (manual / 'notes.txt').write_text('hi')
  argv = ['image_folder', '--manual_dir', str(manual), '--config', 'native']
  # Two workers: the tasks also go through the process pool once.
  argv += ['--data_dir', str(tmp_path / 'data'), '--num_workers', '2']
  assert build_lib.main(argv) == 0
  out = capsys.readouterr().out
  assert 'image_folder/native' in out and 'train: 2 crops from 2 photos' in out
  assert 'unreadable_photos: 1' in out and 'ignored_files: 1' in out
  assert set(read(tmp_path / 'data')) == {'x/a_0', 'b_0'}


@pytest.mark.parametrize('layout', ['empty', 'missing', 'no_images', 'splits'])
def test_folder_without_images_is_a_one_line_error(tmp_path, layout):
  manual = tmp_path / 'photos'
  if layout != 'missing':
    manual.mkdir()
  if layout == 'no_images':
    (manual / 'readme.txt').write_text('hi')
    save(manual / '.hidden' / 'a.png', 4, 4, 0, 'PNG')
  if layout == 'splits':
    (manual / 'train').mkdir()
    save(manual / 'elsewhere.png', 4, 4, 0, 'PNG')
  with pytest.raises(FileNotFoundError) as error:
    build(manual, tmp_path / 'data')
  message = str(error.value)
  assert str(manual) in message and '\n' not in message, message
