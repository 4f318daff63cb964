"""`sku110k_crops`: one example per SKU110K box, official train/val/test split.

Build: `python -m data_builders.build sku110k_crops --manual_dir DIR --data_dir OUT
[--config 128]` (or `data_builders.build.build(...)`), without TensorFlow. The
`tfds build` CLI does not start without TensorFlow in tensorflow-datasets
4.9.10 (its `main` imports a converter that needs `tf.train`); with the
`[tfds-cli]` extra installed, `tfds build data_builders/sku110k_crops
--manual_dir DIR --data_dir OUT [--config 128] [--file_format=tfrecord]` works.

`manual_dir` may hold (first match wins):
  * an extracted archive: `SKU110K_fixed/{images,annotations}/` (or the two
    folders directly in `manual_dir`);
  * the YOLO layout: `images/{split}/<split>_<i>.jpg` + `labels/{split}/<split>_<i>.txt`
    (`cls xc yc w h`, normalised; converted with the decoded photo size);
  * `SKU110K_fixed.tar.gz`, streamed with `tarfile` mode `r|gz` (never
    extracted). The CSVs are read first: from an `annotations/` folder beside the
    archive if there is one, else by a first streaming pass that reads only the
    CSV members and stops once all three are found (a full decompression pass
    when they come last in the archive). The second pass hands each annotated
    photo's bytes to the worker pool, so memory is bounded by the window of
    photos in flight plus the parsed boxes (~30 MB for the real CSVs).

Crops of the tar source are written in archive order, those of the folder
sources in CSV order; `crop_id` = `<origin>_<index of the box in its photo>`
is the same whatever the source. Photos in the archive that no CSV references
are counted (`unannotated_photos`) and ignored.
"""

from __future__ import annotations

import array
import codecs
import csv
import dataclasses
import logging
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data_builders import crops

log = logging.getLogger(__name__)

SPLITS = ('train', 'val', 'test')
ARCHIVE_NAME = 'SKU110K_fixed.tar.gz'
_CSV_NAME = re.compile(r'annotations_(train|val|test)\.csv$')


@dataclasses.dataclass(eq=False)
class Sku110kCropsConfig(crops.CropsConfig):
  """Config of `sku110k_crops`; see `crops.CropOptions` for the options."""


@dataclasses.dataclass
class _PhotoBoxes:
  boxes: array.array  # flat x1,y1,x2,y2,...
  size: tuple[int, int]  # (width, height) stated by the CSV


def parse_annotations_csv(
  text: Iterator[str], filename: str
) -> dict[str, _PhotoBoxes]:
  """Parses one SKU110K CSV (no header, 8 columns) into boxes per photo file name.

  Raises:
    ValueError: naming `filename` and the line of a malformed row.
  """
  photos: dict[str, _PhotoBoxes] = {}
  reader = csv.reader(text)
  for row in reader:
    if not row or (len(row) == 1 and not row[0].strip()):
      continue
    where = f'{filename}:{reader.line_num}'
    if len(row) != 8:
      raise ValueError(
        f'{where}: expected 8 columns image_name,x1,y1,x2,y2,class,'
        f'image_width,image_height, got {len(row)}: {row!r}'
      )
    name = row[0].strip()
    if not name:
      raise ValueError(f'{where}: empty image_name')
    try:
      x1, y1, x2, y2, width, height = (int(row[i]) for i in (1, 2, 3, 4, 6, 7))
    except ValueError:
      raise ValueError(
        f'{where}: coordinates and image size must be integers: {row!r}'
      ) from None
    if width <= 0 or height <= 0:
      raise ValueError(f'{where}: image size must be positive: {row!r}')
    photo = photos.get(name)
    if photo is None:
      photo = photos[name] = _PhotoBoxes(array.array('q'), (width, height))
    photo.boxes.extend((x1, y1, x2, y2))
  return photos


def parse_yolo_labels(text: str, filename: str) -> np.ndarray:
  """Parses YOLO lines `cls xc yc w h` into an (n, 4) float array."""
  rows = []
  for line_number, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    fields = line.split()
    try:
      if len(fields) != 5:
        raise ValueError
      int(fields[0])
      rows.append([float(v) for v in fields[1:]])
    except ValueError:
      raise ValueError(
        f'{filename}:{line_number}: expected `cls xc yc w h` '
        f'(int, 4 floats), got {line!r}'
      ) from None
  return np.array(rows, dtype=np.float64).reshape(-1, 4)


def _natural_key(stem: str):
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', stem)]


def _task(
  split: str, name: str, photo: _PhotoBoxes, **kwargs
) -> crops.PhotoTask:
  return crops.PhotoTask(
    split=split,
    origin=Path(name).stem,
    source=kwargs.pop('source', name),
    boxes=np.frombuffer(photo.boxes, dtype=np.int64).reshape(-1, 4),
    expected_size=photo.size,
    **kwargs,
  )


def _read_csv_dir(directory: Path) -> dict[str, dict[str, _PhotoBoxes]]:
  annotations = {}
  for split in SPLITS:
    path = directory / f'annotations_{split}.csv'
    if path.is_file():
      with path.open(newline='', encoding='utf-8') as f:
        annotations[split] = parse_annotations_csv(f, str(path))
  return annotations


def _folder_source(root: Path) -> crops.CropSource:
  annotations = _read_csv_dir(root / 'annotations')
  if not annotations:
    raise FileNotFoundError(
      f'no annotations_{{train,val,test}}.csv in {root / "annotations"}'
    )
  images = root / 'images'

  def tasks():
    for split, photos in annotations.items():
      for name, photo in photos.items():
        yield _task(
          split, name, photo, path=str(images / name), source=str(images / name)
        )

  extra = {split: {'unannotated_photos': 0} for split in annotations}
  return crops.CropSource(
    f'extracted folder {root}',
    list(annotations),
    tasks,
    num_photos=sum(map(len, annotations.values())),
    extra_counts=extra,
  )


def _yolo_source(root: Path) -> crops.CropSource:
  splits = [s for s in SPLITS if (root / 'images' / s).is_dir()]
  photo_lists = {}
  extra = {}
  for split in splits:
    photos = sorted(
      (
        p
        for p in (root / 'images' / split).iterdir()
        if p.suffix in crops.IMAGE_EXTENSIONS
      ),
      key=lambda p: _natural_key(p.stem),
    )
    labelled = [(p, root / 'labels' / split / f'{p.stem}.txt') for p in photos]
    photo_lists[split] = [(p, lab) for p, lab in labelled if lab.is_file()]
    extra[split] = {
      'unannotated_photos': len(labelled) - len(photo_lists[split])
    }

  def tasks():
    for split, photos in photo_lists.items():
      for photo, label_file in photos:
        boxes = parse_yolo_labels(
          label_file.read_text(encoding='utf-8'), str(label_file)
        )
        yield crops.PhotoTask(
          split=split,
          origin=photo.stem,
          source=str(photo),
          boxes=boxes,
          path=str(photo),
          normalized=True,
        )

  return crops.CropSource(
    f'YOLO layout {root}',
    splits,
    tasks,
    num_photos=sum(map(len, photo_lists.values())),
    extra_counts=extra,
  )


def _member_kind(name: str) -> tuple[str, str] | None:
  """('csv', split) / ('image', file name) for interesting tar members."""
  parts = name.split('/')
  base = parts[-1]
  if base.startswith('._') or len(parts) < 2:  # macOS resource forks
    return None
  if parts[-2] == 'annotations' and (m := _CSV_NAME.fullmatch(base)):
    return 'csv', m.group(1)
  if parts[-2] == 'images' and base.endswith(crops.IMAGE_EXTENSIONS):
    return 'image', base
  return None


def _read_tar_csvs(tar_path: Path) -> dict[str, dict[str, _PhotoBoxes]]:
  annotations = {}
  with tarfile.open(tar_path, 'r|gz') as tar:
    for member in tar:
      kind = _member_kind(member.name) if member.isfile() else None
      if kind and kind[0] == 'csv':
        # Line by line: the member file object of a stream is not seekable.
        text = codecs.iterdecode(tar.extractfile(member), 'utf-8')
        annotations[kind[1]] = parse_annotations_csv(
          text, f'{tar_path}:{member.name}'
        )
        if len(annotations) == len(SPLITS):
          break  # no need to decompress the rest
  return annotations


def _tar_source(tar_path: Path) -> crops.CropSource:
  csv_dir = next(
    (
      d
      for d in (
        tar_path.parent / 'annotations',
        tar_path.parent / 'SKU110K_fixed' / 'annotations',
      )
      if d.is_dir()
    ),
    None,
  )
  annotations = _read_csv_dir(csv_dir) if csv_dir else _read_tar_csvs(tar_path)
  if not annotations:
    raise FileNotFoundError(
      f'{tar_path}: no annotations/annotations_{{train,val,test}}.csv'
    )
  split_of = {
    name: split for split, photos in annotations.items() for name in photos
  }
  extra = {split: {'unannotated_photos': 0} for split in annotations}

  def tasks():
    seen = set()
    with tarfile.open(tar_path, 'r|gz') as tar:
      for member in tar:
        kind = _member_kind(member.name) if member.isfile() else None
        if not kind or kind[0] != 'image':
          continue
        name = kind[1]
        split = split_of.get(name)
        if split is None:
          guess = name.split('_', 1)[0]
          if guess in extra:
            extra[guess]['unannotated_photos'] += 1
          continue
        if name in seen:
          log.warning(
            '%s: %s appears twice in the archive; kept the first',
            tar_path,
            name,
          )
          continue
        seen.add(name)
        yield _task(
          split,
          name,
          annotations[split][name],
          data=tar.extractfile(member).read(),
          source=f'{tar_path}:{member.name}',
        )
    for (
      name,
      split,
    ) in split_of.items():  # annotated photos absent from the archive
      if name not in seen:
        yield _task(
          split,
          name,
          annotations[split][name],
          source=f'{tar_path}:images/{name}',
        )

  return crops.CropSource(
    f'archive {tar_path}',
    list(annotations),
    tasks,
    num_photos=len(split_of),
    extra_counts=extra,
  )


def find_source(manual_dir: Path) -> crops.CropSource:
  """Detects the SKU110K layout in `manual_dir` (see the module docstring)."""
  for root in (manual_dir / 'SKU110K_fixed', manual_dir):
    if (root / 'images').is_dir() and (root / 'annotations').is_dir():
      return _folder_source(root)
  if (manual_dir / 'images').is_dir() and (manual_dir / 'labels').is_dir():
    return _yolo_source(manual_dir)
  if (manual_dir / ARCHIVE_NAME).is_file():
    return _tar_source(manual_dir / ARCHIVE_NAME)
  raise FileNotFoundError(
    f'{manual_dir}: found none of SKU110K_fixed/{{images,annotations}}/, '
    f'images/+annotations/, images/{{split}}/+labels/{{split}}/ (YOLO), {ARCHIVE_NAME}'
  )


HOMEPAGE = 'https://github.com/eg4000/SKU110K_CVPR19'
# The BibTeX entry of the upstream README (arXiv:1904.00853).
CITATION = """\
@inproceedings{goldman2019dense,
  author    = {Eran Goldman and Roei Herzig and Aviv Eisenschtat and
               Jacob Goldberger and Tal Hassner},
  title     = {Precise Detection in Densely Packed Scenes},
  booktitle = {Proc. Conf. Comput. Vision Pattern Recognition (CVPR)},
  year      = {2019}
}"""
# The upstream repository has no LICENSE file; its README states the terms
# (checked at eg4000/SKU110K_CVPR19 1fb83d6, 2020-10-20).
LICENSE = (
  'Academic and non-commercial research use only. The SKU110K README '
  '(https://github.com/eg4000/SKU110K_CVPR19) states: "The dataset is '
  'provided for the exclusive use by the recipient and solely for academic '
  'and non-commercial purposes." The repository has no LICENSE file. The '
  'crops are derived from the SKU110K photos and fall under the same terms.'
)


class Sku110kCrops(crops.CropsBuilder):
  """Product crops cut from SKU110K shelf photos, one per annotated box."""

  name = 'sku110k_crops'
  VERSION = '1.0.0'
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = crops.size_configs(Sku110kCropsConfig)
  HOMEPAGE = HOMEPAGE
  CITATION = CITATION
  LICENSE = LICENSE
  DESCRIPTION = """\
Product crops from SKU110K (Goldman et al., CVPR 2019): about 11.7k photos of
densely packed retail shelves with about 1.7 M product boxes (one class,
"object"). Each example is one annotated box cut out of its shelf photo, so
one photo gives ~147 examples; crop_id = <photo stem>_<index of the box in its
photo> is the same whatever layout the input came in.

Splits: the official train / val / test of annotations_{train,val,test}.csv
(photos train_*.jpg, val_*.jpg, test_*.jpg). Photos no CSV references are
ignored and counted (unannotated_photos); photos whose decoded size differs
from the CSV's use the decoded size (size_mismatch_photos)."""
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download {ARCHIVE_NAME} (about 13.6 GB) from {HOMEPAGE}
(http://trax-geometry.s3.amazonaws.com/cvpr_challenge/{ARCHIVE_NAME}) and put,
in manual_dir, any one of (the first found wins):
  * the archive {ARCHIVE_NAME} itself: streamed, never extracted (an
    annotations/ folder of the CSVs beside it saves one pass);
  * its extracted folder SKU110K_fixed/{{images,annotations}}/ (or images/ and
    annotations/ directly in manual_dir);
  * a YOLO conversion: images/{{split}}/<split>_<i>.jpg +
    labels/{{split}}/<split>_<i>.txt (`cls xc yc w h`, normalised).
The data is for academic and non-commercial use only (see the homepage)."""

  def _prepare_source(self, manual_dir: Path) -> crops.CropSource:
    return find_source(manual_dir)
