"""`grocery_store`: the GroceryStoreDataset (Klasson et al., WACV 2019), real
photos of fruit, vegetables and carton products taken in grocery stores,
labelled at two levels, plus one iconic (catalogue) image per class.

Build: `python -m data_builders.build grocery_store --manual_dir CLONE
--data_dir OUT [--config native|256|128]`, where CLONE is a clone of
https://github.com/marcusklasson/GroceryStoreDataset (its root or its
`dataset/` folder). Read from the clone's `dataset/`:
  * `classes.csv`: one row per fine class, `Class Name, Class ID, Coarse Class
    Name, Coarse Class ID, Iconic Image Path, Product Description Path`, the
    iconic path relative to `dataset/` with a leading slash;
  * `train.txt`, `val.txt`, `test.txt`: one photo a line, `path, fine id,
    coarse id`, the path relative to `dataset/`.

Splits: `train`, `val`, `test` (the photos of each list, in list order) and
`iconic` (each class's iconic image, in class id order). Each example is one
whole image, as in `image_folder`: `box` = `[0, 0, w, h]` (the stored
pixels), turned upright as its EXIF orientation says; `origin` = its path
relative to `dataset/` without extension
(`train/Fruit/Apple/Golden-Delicious/Golden-Delicious_001`), `crop_index` 0,
`crop_id` = `<origin>_0`. `label` is a ClassLabel over the fine class names in
classes.csv's id order (its ids are the dataset's own), `label_name` the
name; `coarse_label` and `coarse_label_name` likewise for the coarse classes.

A folder that is not a clone is a one-line FileNotFoundError saying what is
missing and how to get the clone. A malformed classes.csv or list line (bad
id, fine and coarse ids that disagree with classes.csv) stops the build
naming the file and line; missing or undecodable photos are counted and
skipped as in `data_builders.crops`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import tensorflow_datasets as tfds

from data_builders import crops

SPLITS = ('train', 'val', 'test')
ICONIC_SPLIT = 'iconic'
CLONE_URL = 'https://github.com/marcusklasson/GroceryStoreDataset'
CLASSES_FILE = 'classes.csv'
# The columns read from classes.csv (the sixth, the description path, is not).
CLASSES_HEADER = (
  'Class Name (str)',
  'Class ID (int)',
  'Coarse Class Name (str)',
  'Coarse Class ID (int)',
  'Iconic Image Path (str)',
)
_WHOLE_IMAGE = np.array([[0.5, 0.5, 1.0, 1.0]])  # normalised xc, yc, w, h
_GET_CLONE = (
  f'get it with `git clone {CLONE_URL}` and pass the clone (or its dataset/ '
  'folder) as manual_dir'
)


@dataclasses.dataclass(eq=False)
class GroceryStoreConfig(crops.CropsConfig):
  """Config of `grocery_store`; see `crops.CropOptions` for the options."""


@dataclasses.dataclass(frozen=True)
class GroceryClass:
  """One row of classes.csv."""

  name: str
  id: int
  coarse_name: str
  coarse_id: int
  iconic: PurePosixPath  # relative to dataset/


@dataclasses.dataclass(frozen=True)
class Classes:
  """The fine classes (index = fine id) and coarse names (index = coarse id)."""

  fine: list[GroceryClass]
  coarse_names: list[str]


def find_dataset_dir(manual_dir: Path) -> Path:
  """The clone's `dataset/` folder: `manual_dir/dataset` or `manual_dir`.

  Raises:
    FileNotFoundError: one line saying what is missing and how to get it.
  """
  for folder in (manual_dir / 'dataset', manual_dir):
    if (folder / CLASSES_FILE).is_file():
      missing = [
        f'{split}.txt'
        for split in SPLITS
        if not (folder / f'{split}.txt').is_file()
      ]
      if missing:
        raise FileNotFoundError(
          f'grocery_store: {folder} has {CLASSES_FILE} but no '
          f'{", ".join(missing)}: not a complete GroceryStoreDataset clone; '
          f'{_GET_CLONE}'
        )
      return folder
  if not manual_dir.is_dir():
    what = 'does not exist'
  else:
    what = f'has no dataset/{CLASSES_FILE} (nor {CLASSES_FILE})'
  raise FileNotFoundError(
    f'grocery_store: {manual_dir} {what}: it is not a clone of the '
    f'GroceryStoreDataset; {_GET_CLONE}'
  )


def _image_path(text: str) -> PurePosixPath:
  """A path of the lists or classes.csv, relative to dataset/."""
  return PurePosixPath(text.strip().lstrip('/'))


def _dense(ids, where: str, what: str) -> None:
  if sorted(ids) != list(range(len(ids))):
    raise ValueError(
      f'{where}: the {what} ids are not 0..{len(ids) - 1}, each once: '
      f'{sorted(ids)}'
    )


def read_classes(dataset_dir: Path) -> Classes:
  """Reads classes.csv.

  Raises:
    ValueError: naming the file (and line) when a row is malformed, the ids
      are not 0..n-1, a name repeats, or a coarse id has two names.
  """
  path = dataset_dir / CLASSES_FILE
  with open(path, newline='', encoding='utf-8') as f:
    reader = csv.reader(f)
    header = tuple(column.strip() for column in next(reader, []))
    if header[: len(CLASSES_HEADER)] != CLASSES_HEADER:
      raise ValueError(
        f"{path}: header {','.join(header)!r} is not classes.csv's, which "
        f'starts {",".join(CLASSES_HEADER)}'
      )
    rows = []
    for row in reader:
      if not any(cell.strip() for cell in row):
        continue
      where = f'{path}:{reader.line_num}'
      if len(row) < len(CLASSES_HEADER):
        raise ValueError(
          f'{where}: expected at least {len(CLASSES_HEADER)} columns '
          f'({", ".join(CLASSES_HEADER)}), got {len(row)}'
        )
      name, fine_id, coarse_name, coarse_id, iconic = (
        cell.strip() for cell in row[: len(CLASSES_HEADER)]
      )
      try:
        fine_id, coarse_id = int(fine_id), int(coarse_id)
      except ValueError:
        raise ValueError(
          f'{where}: class ids must be integers, got {fine_id!r}, {coarse_id!r}'
        ) from None
      if not name or not coarse_name or not iconic:
        raise ValueError(f'{where}: empty class name or iconic image path')
      rows.append(
        GroceryClass(name, fine_id, coarse_name, coarse_id, _image_path(iconic))
      )
  if not rows:
    raise ValueError(f'{path}: no classes')
  fine = sorted(rows, key=lambda c: c.id)
  _dense([c.id for c in fine], str(path), 'fine class')
  names = [c.name for c in fine]
  if len(set(names)) != len(names):
    repeated = sorted({n for n in names if names.count(n) > 1})
    raise ValueError(f'{path}: class names repeat: {repeated}')
  coarse = {}
  for c in fine:
    if coarse.setdefault(c.coarse_id, c.coarse_name) != c.coarse_name:
      raise ValueError(
        f'{path}: coarse id {c.coarse_id} has two names, '
        f'{coarse[c.coarse_id]!r} and {c.coarse_name!r}'
      )
  _dense(list(coarse), str(path), 'coarse class')
  coarse_names = [coarse[i] for i in range(len(coarse))]
  if len(set(coarse_names)) != len(coarse_names):
    raise ValueError(f'{path}: a coarse class name has two ids')
  return Classes(fine, coarse_names)


def read_list(
  dataset_dir: Path, split: str, classes: Classes
) -> list[tuple[PurePosixPath, GroceryClass]]:
  """The `(photo path relative to dataset/, class)` of `<split>.txt`, in order.

  Raises:
    ValueError: naming the file and line when a line is malformed or its ids
      disagree with classes.csv.
  """
  path = dataset_dir / f'{split}.txt'
  photos = []
  with open(path, encoding='utf-8') as f:
    for line_num, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f'{path}:{line_num}'
      parts = line.rsplit(',', 2)
      try:
        if len(parts) != 3:
          raise ValueError
        fine_id, coarse_id = int(parts[1]), int(parts[2])
      except ValueError:
        raise ValueError(
          f'{where}: expected `path, fine id, coarse id`, got {line.strip()!r}'
        ) from None
      if not 0 <= fine_id < len(classes.fine):
        raise ValueError(
          f'{where}: fine id {fine_id} is not a class of {CLASSES_FILE} '
          f'(0..{len(classes.fine) - 1})'
        )
      cls = classes.fine[fine_id]
      if coarse_id != cls.coarse_id:
        raise ValueError(
          f'{where}: coarse id {coarse_id} disagrees with {CLASSES_FILE}, '
          f'where {cls.name} (id {fine_id}) is in {cls.coarse_name} '
          f'(id {cls.coarse_id})'
        )
      photos.append((_image_path(parts[0]), cls))
  return photos


def _task(
  split: str, dataset_dir: Path, rel: PurePosixPath, cls: GroceryClass
) -> crops.PhotoTask:
  path = dataset_dir / rel
  return crops.PhotoTask(
    split=split,
    origin=str(rel.with_suffix('')),
    source=str(path),
    boxes=_WHOLE_IMAGE,
    normalized=True,
    path=str(path),
    labels=[cls.name],
    crop_indices=[0],
    exif_orientation=True,
    extras=[
      {'coarse_label': cls.coarse_id, 'coarse_label_name': cls.coarse_name}
    ],
  )


def find_source(manual_dir: Path) -> crops.CropSource:
  """Describes the clone in `manual_dir` (see the module docstring)."""
  dataset_dir = find_dataset_dir(manual_dir)
  classes = read_classes(dataset_dir)
  lists = {split: read_list(dataset_dir, split, classes) for split in SPLITS}
  splits = [*SPLITS, ICONIC_SPLIT]

  def tasks() -> Iterator[crops.PhotoTask]:
    for split, photos in lists.items():
      for rel, cls in photos:
        yield _task(split, dataset_dir, rel, cls)
    for cls in classes.fine:
      yield _task(ICONIC_SPLIT, dataset_dir, cls.iconic, cls)

  return crops.CropSource(
    f'GroceryStoreDataset clone {dataset_dir}',
    splits,
    tasks,
    num_photos=sum(map(len, lists.values())) + len(classes.fine),
    label_names=[c.name for c in classes.fine],
    extra_counts={split: {'exif_oriented_photos': 0} for split in splits},
    extra_label_names={'coarse_label': classes.coarse_names},
  )


class GroceryStore(crops.CropsBuilder):
  """GroceryStoreDataset photos and iconic images, fine and coarse labels."""

  name = 'grocery_store'
  VERSION = '1.0.0'
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = crops.size_configs(GroceryStoreConfig)
  LABELLED = True
  HOMEPAGE = CLONE_URL
  # The BibTeX entry of the upstream README (arXiv:1901.00711).
  CITATION = """\
@inproceedings{klasson2019hierarchical,
  title     = {A Hierarchical Grocery Store Image Dataset with Visual and
               Semantic Labels},
  author    = {Klasson, Marcus and Zhang, Cheng and Kjellstr{\\"o}m, Hedvig},
  booktitle = {IEEE Winter Conference on Applications of Computer Vision
               (WACV)},
  year      = {2019}
}"""
  LICENSE = (
    'MIT License, Copyright (c) 2019 Marcus Klasson (the LICENSE file of '
    f"{CLONE_URL}). The examples are the dataset's images, re-encoded, and "
    'fall under the same terms.'
  )
  DESCRIPTION = """\
The GroceryStoreDataset (Klasson et al., WACV 2019): real photos of fruit,
vegetables and carton products (juice, milk, yoghurt, ...) taken with a
smartphone in grocery stores, mostly 348x348 pixels, labelled with 81 fine
classes (e.g. Granny-Smith) grouped into coarse classes (e.g. Apple; 43 in
classes.csv, though the upstream README says 42), plus one iconic catalogue
image per fine class. Each example is one whole image,
as in image_folder: box = [0, 0, w, h], turned upright by its EXIF
orientation; origin = its path relative to the clone's dataset/ folder
without extension, crop_index 0.

Splits: train, val and test (the photos of dataset/{train,val,test}.txt, in
list order; 2,640 / 296 / 2,485 in the published clone) and iconic (each
class's iconic image, in class id order)."""
  LABEL_DESCRIPTION = """, label (ClassLabel over the fine class names of
classes.csv in its id order, so the ids are the dataset's own) and
label_name, coarse_label (ClassLabel over the coarse class names, in coarse
id order) and coarse_label_name"""
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Clone the dataset (about 250 MB with its git history; MIT licence) and pass
the clone as manual_dir:
  git clone {CLONE_URL}
manual_dir may be the clone's root or its dataset/ folder, which holds
classes.csv, train.txt, val.txt, test.txt and the photos they list."""

  def _features(self) -> tfds.features.FeaturesDict:
    return crops.crop_features(
      self.builder_config.encoding,
      self.LABELLED,
      extra={
        # Names are set at build time from classes.csv.
        'coarse_label': tfds.features.ClassLabel(),
        'coarse_label_name': tfds.features.Text(),
      },
    )

  def _download_and_prepare(self, dl_manager, download_config=None):
    # TFDS answers a missing or empty manual_dir with a multi-line message
    # about downloading artifacts; one line says what is missing here. Same
    # default as TFDS's download manager: <download_dir>/manual.
    manual_dir = (download_config and download_config.manual_dir) or (
      dl_manager.download_dir / 'manual'
    )
    find_dataset_dir(Path(os.fspath(manual_dir)))
    super()._download_and_prepare(dl_manager, download_config)

  def _prepare_source(self, manual_dir: Path) -> crops.CropSource:
    return find_source(manual_dir)
