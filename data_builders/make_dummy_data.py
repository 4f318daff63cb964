"""Writes the tiny fake inputs in `data_builders/<builder>/dummy_data/`.

TFDS's convention: each builder ships a few small files in the layout its
`manual_dir` takes, and a test builds the real builder from them and checks
the split sizes (`dummy_data_test.py`). The files are checked in; this script
makes them reproducible: `python -m data_builders.make_dummy_data` rewrites
them (deterministic pixels; the JPEG bytes depend on Pillow's libjpeg).

Each input holds one or two cases of bad input, so the counts the test expects
say what the builder does with them (`EXPECTED` in the test, listed here per
builder).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent

# sku110k_crops: the extracted archive, SKU110K_fixed/{images,annotations}/.
# (width, height) and CSV boxes per photo; photo None: listed in the CSV but
# not in images/ (a missing photo).
SKU110K_PHOTOS = {
  'train_0': ((64, 48), [(0, 0, 20, 30), (10, 5, 64, 48), (30, 20, 80, 40)]),
  'train_1': ((56, 40), [(5, 5, 25, 35), (20, 30, 10, 12)]),
  'train_2': (None, [(0, 0, 10, 10)]),
  'val_0': ((40, 56), [(1, 2, 39, 55)]),
  'test_0': ((48, 48), [(4, 4, 16, 40), (16, 4, 44, 20)]),
}
# train: 6 boxes, 4 crops (one clipped: 30,20,80,40 -> 30,20,64,40; one
# inverted: skipped; train_2 missing: its box skipped); val 1; test 2.
# One photo in images/ that no CSV names (unannotated, ignored).
SKU110K_UNANNOTATED = 'train_9'

# rack_crops: a flat folder of photos with their Pascal VOC files.
RACKS = {
  'rack_1.jpg': (
    (72, 48),
    [
      ('cola', (2, 2, 30, 40)),
      ('chips', (32, 4, 70, 44)),
      ('__UNKNOWN', (0, 0, 8, 8)),
    ],
  ),
  'rack_2.png': (
    (60, 40),
    [('cola', (4, 4, 28, 36)), ('tea', (30, 10, 70, 38))],
  ),
}
# 5 boxes: 4 crops of 3 classes (chips, cola, tea), one placeholder left out,
# one box clipped (30,10,70,38 -> 30,10,60,38).

# image_folder: split folders, nested, with a corrupt and a non-image file.
FOLDER = {
  'train/shelf_a.jpg': (40, 30, 'JPEG'),
  'train/aisle 2/shelf_b.png': (24, 36, 'PNG'),
  'train/aisle 2/shelf_b.jpg': (36, 24, 'JPEG'),
  'val/shelf_c.jpg': (32, 32, 'JPEG'),
}
# train: 3 images + broken.jpg (not an image: unreadable, skipped) +
# notes.txt (ignored); val: 1.

# grocery_store: a fake GroceryStoreDataset clone (its dataset/ folder):
# classes.csv with 3 fine classes in 2 coarse ones (ids in this order), the
# lists train/val/test.txt with their photos, one iconic image (and product
# description) per class. Fine class: (coarse class, folder in each split).
GROCERY_CLASSES = {
  'Golden-Delicious': ('Apple', 'Fruit/Apple/Golden-Delicious'),
  'Granny-Smith': ('Apple', 'Fruit/Apple/Granny-Smith'),
  'Oatly-Oat-Milk': ('Oat-Milk', 'Packages/Oat-Milk/Oatly-Oat-Milk'),
}
# Split: the listed photos in list order, (fine class, number, (width,
# height)); size None: listed but not in the clone (a missing photo).
GROCERY_PHOTOS = {
  'train': [
    ('Golden-Delicious', 1, (36, 36)),
    ('Golden-Delicious', 2, (48, 36)),
    ('Granny-Smith', 1, (36, 36)),
    ('Granny-Smith', 2, None),
    ('Oatly-Oat-Milk', 1, (36, 48)),
  ],
  'val': [('Granny-Smith', 3, (36, 36)), ('Oatly-Oat-Milk', 2, (36, 36))],
  'test': [
    ('Golden-Delicious', 3, (36, 36)),
    ('Granny-Smith', 4, (36, 36)),
    ('Oatly-Oat-Milk', 3, (36, 48)),
  ],
}
# Stored turned as phones store photos (EXIF orientation 6: shown rotated 90
# degrees clockwise, upright 36x48).
GROCERY_EXIF_ROTATED = 'train/Fruit/Apple/Golden-Delicious/Golden-Delicious_002'
GROCERY_ICONIC_SIZE = (20, 20)
# train: 5 listed, 4 examples (Granny-Smith_002 missing), one EXIF-oriented;
# val 2; test 3; iconic 3.


def pixels(width: int, height: int, seed: int) -> np.ndarray:
  """Smooth stripes (JPEG keeps them within a few levels), one per seed."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width].astype(np.float64)
  channels = [
    127 + 100 * np.sin(x / rng.uniform(4, 9) + y / rng.uniform(4, 9) + k)
    for k in range(3)
  ]
  return np.stack(channels, axis=-1).astype(np.uint8)


def _save(
  path: Path,
  width: int,
  height: int,
  seed: int,
  fmt: str,
  exif_orientation: int | None = None,
) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  options = {'quality': 85} if fmt == 'JPEG' else {'optimize': True}
  if exif_orientation is not None:
    exif = Image.Exif()
    exif[0x0112] = exif_orientation
    options['exif'] = exif
  Image.fromarray(pixels(width, height, seed)).save(path, fmt, **options)


def _fresh(folder: Path) -> Path:
  """Empties `folder` (keeping nothing stale), returns it."""
  if folder.exists():
    shutil.rmtree(folder)
  folder.mkdir(parents=True)
  return folder


def make_sku110k(out: Path) -> None:
  base = _fresh(out) / 'SKU110K_fixed'
  rows = {}
  for seed, (origin, (size, boxes)) in enumerate(SKU110K_PHOTOS.items()):
    w, h = size or (50, 50)
    if size is not None:
      _save(base / 'images' / f'{origin}.jpg', w, h, seed, 'JPEG')
    rows.setdefault(origin.split('_')[0], []).extend(
      f'{origin}.jpg,{x1},{y1},{x2},{y2},object,{w},{h}'
      for x1, y1, x2, y2 in boxes
    )
  _save(base / 'images' / f'{SKU110K_UNANNOTATED}.jpg', 20, 20, 99, 'JPEG')
  (base / 'annotations').mkdir()
  for split, lines in rows.items():
    (base / 'annotations' / f'annotations_{split}.csv').write_text(
      '\n'.join(lines) + '\n'
    )


def _voc(filename: str, size, objects) -> str:
  w, h = size
  parts = [
    '<annotation>',
    f'  <filename>{filename}</filename>',
    f'  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>',
  ]
  for name, (x1, y1, x2, y2) in objects:
    parts += [
      '  <object>',
      f'    <name>{name}</name>',
      f'    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>'
      f'<ymax>{y2}</ymax></bndbox>',
      '  </object>',
    ]
  return '\n'.join(parts + ['</annotation>']) + '\n'


def make_racks(out: Path) -> None:
  out = _fresh(out)
  for seed, (filename, (size, objects)) in enumerate(RACKS.items()):
    fmt = 'PNG' if filename.endswith('.png') else 'JPEG'
    _save(out / filename, *size, seed + 10, fmt)
    (out / filename).with_suffix('.xml').write_text(
      _voc(filename, size, objects)
    )


def make_folder(out: Path) -> None:
  out = _fresh(out)
  for seed, (name, (w, h, fmt)) in enumerate(FOLDER.items()):
    _save(out / name, w, h, seed + 20, fmt)
  (out / 'train' / 'broken.jpg').write_bytes(b'not a JPEG\n')
  (out / 'train' / 'notes.txt').write_text('not an image\n')


def make_grocery(out: Path) -> None:
  base = _fresh(out) / 'dataset'
  coarse_ids = {}
  rows = [
    'Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID '
    '(int),Iconic Image Path (str),Product Description Path (str)'
  ]
  for fine_id, (name, (coarse, folder)) in enumerate(GROCERY_CLASSES.items()):
    coarse_id = coarse_ids.setdefault(coarse, len(coarse_ids))
    stem = f'/iconic-images-and-descriptions/{folder}/{name}'
    rows.append(
      f'{name},{fine_id},{coarse},{coarse_id},{stem}_Iconic.jpg,'
      f'{stem}_Description.txt'
    )
    _save(
      base / f'{stem[1:]}_Iconic.jpg',
      *GROCERY_ICONIC_SIZE,
      40 + fine_id,
      'JPEG',
    )
    (base / f'{stem[1:]}_Description.txt').write_text(
      f'{name}: a product description.\n'
    )
  (base / 'classes.csv').write_text('\n'.join(rows) + '\n')
  fine_ids = {name: i for i, name in enumerate(GROCERY_CLASSES)}
  seed = 50
  for split, photos in GROCERY_PHOTOS.items():
    lines = []
    for name, number, size in photos:
      coarse, folder = GROCERY_CLASSES[name]
      origin = f'{split}/{folder}/{name}_{number:03d}'
      if size is not None:
        orientation = 6 if origin == GROCERY_EXIF_ROTATED else None
        _save(base / f'{origin}.jpg', *size, seed, 'JPEG', orientation)
        seed += 1
      lines.append(f'{origin}.jpg, {fine_ids[name]}, {coarse_ids[coarse]}')
    (base / f'{split}.txt').write_text('\n'.join(lines) + '\n')


MAKERS = {
  'sku110k_crops': make_sku110k,
  'rack_crops': make_racks,
  'image_folder': make_folder,
  'grocery_store': make_grocery,
}


def dummy_dir(name: str, root: Path = ROOT) -> Path:
  return root / name / 'dummy_data'


def main(root: Path = ROOT) -> None:
  for name, make in MAKERS.items():
    make(dummy_dir(name, root))
    size = sum(f.stat().st_size for f in dummy_dir(name, root).rglob('*'))
    print(f'{dummy_dir(name, root)}: {size} bytes')


if __name__ == '__main__':
  main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
