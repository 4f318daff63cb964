"""Shelf photos with boxes, read for recognition: their boxes cut as a
build cuts them (`crops.cut_boxes`), bad input counted, never fatal."""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import pathlib
import re

import tqdm

log = logging.getLogger(__name__)

# Names of boxes that are not products (rack_crops' placeholder default).
PLACEHOLDER_PATTERN = '^__'


def photo_source(folder: str | os.PathLike):
  """The `crops.CropSource` of the annotated photos in `folder`.

  Pascal VOC files (anywhere under it) are read by `rack_crops` with every
  name kept; otherwise the SKU110K / YOLO layouts by `sku110k_crops`.

  Raises:
    FileNotFoundError: no known layout; ValueError: a malformed annotation
      file (named, with its line or object).
  """
  from data_builders.rack_crops import rack_crops_dataset_builder as rack  # pylint: disable=g-import-not-at-top
  from data_builders.sku110k_crops import sku110k_crops_dataset_builder as sku  # pylint: disable=g-import-not-at-top

  folder = pathlib.Path(folder)
  if (folder / 'Annotations').is_dir() or next(folder.rglob('*.xml'), None):
    return rack.find_source(folder, placeholder_pattern='')
  try:
    return sku.find_source(folder)
  except FileNotFoundError:
    raise FileNotFoundError(
      f'{folder}: no Pascal VOC *.xml, no SKU110K images/ + annotations/ '
      f'(or {sku.ARCHIVE_NAME}) and no YOLO images/{{split}}/ + '
      'labels/{split}/'
    ) from None


@dataclasses.dataclass
class Photo:
  name: str  # file name, as in the CSV
  origin: str
  path: str | None
  data: bytes | None  # the photo's bytes when it came from an archive
  boxes: list  # kept boxes (clipped x1, y1, x2, y2)
  true: list  # true name per kept box, or None


def read_photos(
  folder: str, min_side: int = 1
) -> tuple[list[Photo], list[bytes], dict]:
  """(photos, crop images in photo order, counts) of the annotated photos.

  The boxes are cut by `crops.cut_boxes`, as a build cuts them: bad input
  handled alike (clipped and skipped boxes, missing and unreadable photos),
  counted and logged with the file name: the first few of each kind one
  line each, then a total. Crops are kept JPEG-encoded as the gallery's
  (memory: a few KB a box).
  """
  from data_builders import crops  # pylint: disable=g-import-not-at-top

  source = photo_source(folder)
  # Native crops, as the gallery's builds; a box of a few pixels says
  # nothing once enlarged to the input size (`skipped_small_boxes`).
  options = crops.CropOptions(min_side=min_side)
  placeholder = re.compile(PLACEHOLDER_PATTERN)
  counts = collections.Counter(dict.fromkeys(crops.COUNT_KEYS, 0))
  logged = collections.Counter()
  photos, images, names = [], [], collections.Counter()
  without_boxes = []
  tasks = list(source.tasks())
  bar = tqdm.tqdm(tasks, desc='reading photos', unit='photo', leave=False)
  for task in bar:
    result = crops.cut_boxes(task, options)
    counts.update(result.counts)
    for kind, message in result.events:
      logged[kind] += 1
      if logged[kind] <= crops.MAX_LOGGED_BOX_EVENTS:
        log.warning('recognize: %s', message)
    where = task.path or task.source
    if not result.crops:
      unread = result.counts.get('unreadable_photos', 0) + result.counts.get(
        'missing_photos', 0
      )
      if not unread:  # Listed in the summary, not dropped silently.
        without_boxes.append(str(where))
      continue
    name = os.path.basename(where.rsplit(':', 1)[-1])
    names[name] += 1
    if names[name] > 1:  # The same file name in two splits.
      name = f'{task.split}_{name}'
    photo = Photo(name, task.origin, task.path, task.data, [], [])
    for crop in result.crops:
      images.append(crops.encode_crop(crop.image, options))
      photo.boxes.append(list(crop.box))
      true = crop.label_name
      photo.true.append(
        None if true is None or placeholder.search(true) else true
      )
    photos.append(photo)
  for kind, n in logged.items():
    if n > crops.MAX_LOGGED_BOX_EVENTS:
      log.warning('recognize: %d %s in all (%s).', n, kind, folder)
  for kind, extra in source.extra_counts.items():
    counts.update(extra)
  counts = dict(counts)
  counts['photos_without_boxes'] = without_boxes
  return photos, images, counts


class Crops:
  """The crops as a random-access source for `embed.embed`."""

  def __init__(self, images):
    self.images = images
    self.name = 'photo boxes'

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    return {'image': self.images[i], 'index': i}
