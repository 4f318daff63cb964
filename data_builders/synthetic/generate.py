"""Public generators: SKU110K-layout shelf photos, VOC-labeled rack photos, tar.gz packing."""

from __future__ import annotations

import gzip
import multiprocessing
import os
import pathlib
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from data_builders.synthetic import products, shelves

SPLITS = ('train', 'val', 'test')
DEFAULT_SHELF_PHOTOS = {'train': 24, 'val': 4, 'test': 8}
DEFAULT_SHELF_PHOTO_SIZE = (
  720,
  960,
)  # (width, height): a portrait phone photo, scaled down
DEFAULT_RACK_PHOTO_SIZE = (960, 720)
# Fewer, larger products than on SKU110K shelves, like the thesis' small-shop
# racks: 12 photos x ~36 boxes / 60 classes ~ 7 crops a class.
DEFAULT_RACK_BOXES = (24, 48)
RACK_PHOTOS_PER_CLASS = (
  3  # each class on 3 rack photos when the box budget allows, else 2
)
ARCHIVE_ROOT = 'SKU110K_fixed'
RACK_FOLDER = 'racks'
_PROGRESS_MIN_PHOTOS = 5  # show a progress bar from this many photos on


def _render_all(jobs: Sequence[shelves.PhotoJob], num_workers: int, desc: str):
  """Yields (job, jpeg, boxes) in job order; output does not depend on num_workers."""
  bar = tqdm(
    total=len(jobs),
    desc=desc,
    unit='photo',
    disable=len(jobs) < _PROGRESS_MIN_PHOTOS,
  )
  try:
    if num_workers <= 1:
      for job in jobs:
        yield (job, *shelves.render_photo(job))
        bar.update()
    else:
      # 'spawn': forking a process that already runs JAX threads can deadlock.
      # Spawned workers re-import the caller's __main__, so callers need the
      # usual `if __name__ == '__main__':` guard; hence in-process by default.
      ctx = multiprocessing.get_context('spawn')
      with ctx.Pool(num_workers) as pool:
        for job, result in zip(jobs, pool.imap(shelves.render_photo, jobs)):
          yield (job, *result)
          bar.update()
  finally:
    bar.close()


def _remove_stale(folder: pathlib.Path, patterns: Iterable[str]) -> None:
  """Deletes files an earlier, larger generation left behind in `folder`."""
  for pattern in patterns:
    for path in folder.glob(pattern):
      path.unlink()


def generate_shelves(
  out_dir: str | os.PathLike,
  *,
  seed: int = 0,
  photos_per_split: Mapping[str, int] | None = None,
  photo_size: tuple[int, int] = DEFAULT_SHELF_PHOTO_SIZE,
  boxes_per_photo: tuple[int, int] = (50, 150),
  num_classes: int = 60,
  class_offset: int = 0,
  num_workers: int = 0,
) -> pathlib.Path:
  """Writes shelf photos in the SKU110K archive layout; returns <out_dir>/SKU110K_fixed.

  Layout: `images/<split>_<i>.jpg` (flat) and `annotations/annotations_<split>.csv`
  (no header; `image_name,x1,y1,x2,y2,object,image_width,image_height`, integer
  pixels, box = PIL crop (x1, y1, x2, y2), x2/y2 exclusive).

  Args:
    out_dir: parent folder; created if missing.
    seed: everything (catalogue, layouts, pixels) is a function of the seed.
    photos_per_split: split -> number of photos (splits from train/val/test);
      default DEFAULT_SHELF_PHOTOS.
    photo_size: (width, height) of every photo.
    boxes_per_photo: inclusive (min, max) number of boxes per photo.
    num_classes: catalogue size; photos show sections of it.
    class_offset: first class id, to draw a catalogue disjoint from another one.
    num_workers: processes rendering photos (0: in this process, the default;
      > 1 needs the caller's `if __name__ == '__main__':` guard). Output is
      identical for any value.
  """
  photos_per_split = dict(
    DEFAULT_SHELF_PHOTOS if photos_per_split is None else photos_per_split
  )
  unknown = set(photos_per_split) - set(SPLITS)
  if unknown:
    raise ValueError(
      f'unknown splits {sorted(unknown)}; expected a subset of {SPLITS}'
    )
  if any(int(n) < 0 for n in photos_per_split.values()):
    raise ValueError(f'photo counts must be >= 0, got {photos_per_split}')
  size = shelves.check_size(photo_size)
  lo, hi = shelves.check_range(boxes_per_photo)
  catalogue = products.make_catalogue(seed, num_classes, class_offset)
  jobs = []
  for split in SPLITS:
    for i in range(int(photos_per_split.get(split, 0))):
      rng = shelves.photo_rng(seed, split, i, stream=1)
      n_boxes = int(rng.integers(lo, hi + 1))
      rows = shelves.shelf_rows(catalogue, n_boxes, size, rng)
      jobs.append(shelves.PhotoJob(seed, split, i, size, rows, 'shelf'))

  root = pathlib.Path(out_dir) / ARCHIVE_ROOT
  images, annotations = root / 'images', root / 'annotations'
  images.mkdir(parents=True, exist_ok=True)
  annotations.mkdir(parents=True, exist_ok=True)
  _remove_stale(images, [f'{s}_*.jpg' for s in SPLITS])
  _remove_stale(annotations, [f'annotations_{s}.csv' for s in SPLITS])
  lines = {split: [] for split in SPLITS if split in photos_per_split}
  for job, jpeg, boxes in _render_all(jobs, num_workers, 'shelf photos'):
    name = f'{job.kind}_{job.index}.jpg'
    (images / name).write_bytes(jpeg)
    w, h = job.photo_size
    lines[job.kind] += [
      f'{name},{b.x1},{b.y1},{b.x2},{b.y2},object,{w},{h}\n' for b in boxes
    ]
  for split, split_lines in lines.items():
    (annotations / f'annotations_{split}.csv').write_text(''.join(split_lines))
  return root


def rack_assignment(
  num_classes: int, box_counts: Sequence[int], rng: np.random.Generator
) -> list[list[int]]:
  """Class indices on each rack photo: every class on RACK_PHOTOS_PER_CLASS (>= 2) photos.

  Greedy: each class goes to the photos showing the fewest classes so far
  (then the most unassigned boxes left), so every photo shows some class and
  every class fits at least one box.
  """
  num_photos = len(box_counts)
  per_class = min(
    RACK_PHOTOS_PER_CLASS, num_photos, sum(box_counts) // num_classes
  )
  if per_class < 2:
    raise ValueError(
      f'{num_classes} classes need >= 2 rack photos each, but {num_photos} photos with '
      f'{sum(box_counts)} boxes in all cannot hold them; add photos or boxes, or use fewer classes'
    )
  if num_classes * per_class < num_photos:
    raise ValueError(
      f'{num_classes} classes on {per_class} photos each leave some of the '
      f'{num_photos} rack photos empty; use fewer photos or more classes'
    )
  left = np.asarray(box_counts, dtype=np.int64).copy()
  on_photo: list[list[int]] = [[] for _ in range(num_photos)]
  for c in rng.permutation(num_classes):
    shown = np.array([len(c) for c in on_photo])
    # np.lexsort sorts by the last key first: fewest classes, most room, random.
    order = np.lexsort((rng.random(num_photos), -left, shown))
    chosen = order[:per_class]
    if left[chosen].min() < 1:
      raise ValueError(
        'rack photos ran out of boxes while spreading classes; '
        'use a narrower boxes_per_photo range or fewer classes'
      )
    for p in chosen:
      on_photo[p].append(int(c))
      left[p] -= 1
  return [sorted(classes) for classes in on_photo]


def _voc_xml(
  folder: str, filename: str, width: int, height: int, boxes
) -> bytes:
  ann = ET.Element('annotation')
  ET.SubElement(ann, 'folder').text = folder
  ET.SubElement(ann, 'filename').text = filename
  ET.SubElement(
    ET.SubElement(ann, 'source'), 'database'
  ).text = 'sspr_jax synthetic'
  size = ET.SubElement(ann, 'size')
  ET.SubElement(size, 'width').text = str(width)
  ET.SubElement(size, 'height').text = str(height)
  ET.SubElement(size, 'depth').text = '3'
  ET.SubElement(ann, 'segmented').text = '0'
  for b in boxes:
    obj = ET.SubElement(ann, 'object')
    ET.SubElement(obj, 'name').text = b.spec.name
    ET.SubElement(obj, 'pose').text = 'Unspecified'
    ET.SubElement(obj, 'truncated').text = '0'
    ET.SubElement(obj, 'difficult').text = '0'
    bndbox = ET.SubElement(obj, 'bndbox')
    for tag, value in zip(
      ('xmin', 'ymin', 'xmax', 'ymax'), (b.x1, b.y1, b.x2, b.y2)
    ):
      ET.SubElement(bndbox, tag).text = str(value)
  ET.indent(ann, space='\t')
  return ET.tostring(ann, encoding='utf-8') + b'\n'


def generate_racks(
  out_dir: str | os.PathLike,
  *,
  seed: int = 0,
  num_photos: int = 12,
  num_classes: int = 60,
  photo_size: tuple[int, int] = DEFAULT_RACK_PHOTO_SIZE,
  boxes_per_photo: tuple[int, int] = DEFAULT_RACK_BOXES,
  class_offset: int = 0,
  num_workers: int = 0,
) -> pathlib.Path:
  """Writes labeled rack photos `rack_<i>.jpg` + Pascal VOC `rack_<i>.xml`; returns <out_dir>/racks.

  Every class appears on RACK_PHOTOS_PER_CLASS photos (at least 2, fewer only
  if the box budget is short), so each class is eligible for the strict split.
  `<name>` is the class name (e.g. `p017_zora_lemon`: class id, brand, variant); boxes are PIL crop boxes
  (xmax/ymax exclusive). With the same seed and class_offset the catalogue
  is the one generate_shelves draws. Defaults: DEFAULT_RACK_PHOTO_SIZE and
  DEFAULT_RACK_BOXES (~7 crops a class for 12 photos and 60 classes).
  num_workers as in generate_shelves.
  """
  if num_photos < 2:
    raise ValueError(
      f'num_photos must be >= 2 (classes must span >= 2 photos), got {num_photos}'
    )
  size = shelves.check_size(photo_size)
  lo, hi = shelves.check_range(boxes_per_photo)
  catalogue = products.make_catalogue(seed, num_classes, class_offset)
  rng = shelves.photo_rng(seed, 'rack', 0, stream=2)
  box_counts = rng.integers(lo, hi + 1, size=num_photos)
  jobs = []
  for i, classes in enumerate(
    rack_assignment(num_classes, box_counts.tolist(), rng)
  ):
    jobs.append(
      shelves.PhotoJob(
        seed,
        'rack',
        i,
        size,
        shelves.rack_rows(
          catalogue,
          classes,
          int(box_counts[i]),
          size,
          shelves.photo_rng(seed, 'rack', i, stream=1),
        ),
        'rack',
      )
    )
  folder = pathlib.Path(out_dir) / RACK_FOLDER
  folder.mkdir(parents=True, exist_ok=True)
  _remove_stale(folder, ['rack_*.jpg', 'rack_*.xml'])
  for job, jpeg, boxes in _render_all(jobs, num_workers, 'rack photos'):
    stem = f'rack_{job.index}'
    (folder / f'{stem}.jpg').write_bytes(jpeg)
    (folder / f'{stem}.xml').write_bytes(
      _voc_xml(folder.name, f'{stem}.jpg', *job.photo_size, boxes)
    )
  return folder


def pack_archive(
  root: str | os.PathLike, tar_path: str | os.PathLike | None = None
) -> pathlib.Path:
  """Packs folder `root` as a reproducible tar.gz with top folder `root.name`.

  Default path: <root.parent>/<root.name>.tar.gz (SKU110K_fixed.tar.gz for
  generate_shelves' output). Members are sorted with zeroed times and owners,
  so equal folders give equal bytes.
  """
  root = pathlib.Path(root)
  if not root.is_dir():
    raise FileNotFoundError(f'not a folder: {root}')
  tar_path = (
    pathlib.Path(tar_path)
    if tar_path is not None
    else root.parent / f'{root.name}.tar.gz'
  )

  def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, '', ''
    info.mode = 0o755 if info.isdir() else 0o644
    return info

  tar_path.parent.mkdir(parents=True, exist_ok=True)
  paths = sorted(
    p for p in root.rglob('*') if p.resolve() != tar_path.resolve()
  )
  with (
    open(tar_path, 'wb') as raw,
    gzip.GzipFile(filename='', mode='wb', fileobj=raw, mtime=0) as gz,
    tarfile.open(fileobj=gz, mode='w', format=tarfile.PAX_FORMAT) as tar,
  ):
    tar.add(root, arcname=root.name, recursive=False, filter=normalise)
    for path in paths:
      tar.add(
        path,
        arcname=f'{root.name}/{path.relative_to(root).as_posix()}',
        recursive=False,
        filter=normalise,
      )
  return tar_path
