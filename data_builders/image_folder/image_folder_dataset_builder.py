"""`image_folder`: every image under a folder of the user's, unlabelled, one
example per file (the whole image), for pre-training on one's own photos.

Build: `python -m data_builders.build image_folder --manual_dir DIR --data_dir
OUT [--config native|256|128]`, or `data_builders.build.build('image_folder',
config=..., manual_dir=DIR, data_dir=OUT)`.

`manual_dir` is searched recursively for files whose extension is one of
`EXTENSIONS` in any case; other files and hidden files (`.DS_Store`, macOS
`._x.jpg`) are ignored and counted (`ignored_files`); hidden folders are not
entered. Symbolic links are followed, except one back to a folder above it
(a loop); a dangling one counts as `missing_photos`. Splits: the sub-folders `train/`, `val/` and `test/` of
`manual_dir` when there is any of them (then nothing outside them is read),
else the whole folder is split `train`.

Each file is one example: `box` = `[0, 0, w, h]` (the stored pixels),
`origin` = its path relative to `manual_dir` without extension, in POSIX form
(`train/shelf 3/IMG_1`), `crop_index` 0 (1, 2, ... for further files whose
paths differ only in the extension: `a.jpg`, `a.png`), `crop_id` =
`<origin>_<crop_index>`. Files are read in sorted path order (by path
component) and written in that order. Unlike the annotated builders, the
image is turned upright as its EXIF orientation says (phone photos), since no
box refers to its stored pixels. Files PIL cannot fully decode (corrupt,
truncated, empty, text) are counted (`unreadable_photos`), logged with their
path and skipped; the rest follows `data_builders.crops`.

The tree is walked twice (count, then stream), one directory listing at a
time, and the images go through the bounded pool of `data_builders.crops`, so
memory stays bounded whatever the number of files.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data_builders import crops

log = logging.getLogger(__name__)

SPLITS = ('train', 'val', 'test')
# Compared lower-cased: `.JPG`, `.Jpeg` and `.PNG` count too.
EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
_WHOLE_IMAGE = np.array([[0.5, 0.5, 1.0, 1.0]])  # normalised xc, yc, w, h
# Names of files outside the split folders logged at most.
_MAX_LOGGED_OUTSIDE = 10


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(crops.CropsConfig):
  """Config of `image_folder`; see `crops.CropOptions` for the options."""


def is_image_name(name: str) -> bool:
  """An image extension (any case) and not hidden (macOS `._x.jpg`)."""
  return (
    not name.startswith('.') and os.path.splitext(name)[1].lower() in EXTENSIONS
  )


def walk_files(folder: Path) -> Iterator[tuple[Path, int | None]]:
  """Yields `(file, crop_index)` under `folder`, sorted by path component.

  `crop_index` numbers the image files of one directory that share a stem
  (`a.jpg` 0, `a.png` 1); it is None for files that are not images. Each
  directory is listed on its own, so only the current chain of directories is
  held. Hidden folders are not entered; FIFOs and sockets are left out;
  dangling symbolic links are yielded (reported missing by the worker).
  """

  def walk(directory: Path, ancestors: frozenset) -> Iterator:
    try:
      with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
      log.warning('image_folder: cannot list %s (%s); skipped', directory, e)
      return
    stems = collections.Counter()
    for entry in entries:
      try:
        is_dir = entry.is_dir()
        is_file = entry.is_file() or (
          entry.is_symlink() and not os.path.exists(entry.path)
        )
      except OSError:
        continue
      if is_dir:
        if entry.name.startswith('.'):
          continue
        # A symlinked folder pointing at one of its ancestors would recurse
        # forever: each real folder is entered once per chain.
        key = _dir_key(entry.path)
        if key is not None and key not in ancestors:
          yield from walk(Path(entry.path), ancestors | {key})
      elif is_file:
        index = None
        if is_image_name(entry.name):
          stem = os.path.splitext(entry.name)[0]
          index = stems[stem]
          stems[stem] += 1
        yield Path(entry.path), index

  root = _dir_key(folder)
  yield from walk(folder, frozenset([root] if root else []))


def _dir_key(path) -> tuple[int, int] | None:
  try:
    stat = os.stat(path)
  except OSError:
    return None
  return stat.st_dev, stat.st_ino


def find_splits(manual_dir: Path) -> dict[str, Path]:
  """Split name -> folder: the `train/val/test` sub-folders, else all `train`."""
  splits = {s: manual_dir / s for s in SPLITS if (manual_dir / s).is_dir()}
  if not splits:
    return {'train': manual_dir}
  outside = sorted(
    e.name
    for e in manual_dir.iterdir()
    if e.name not in splits and not e.name.startswith('.')
  )
  if outside:
    log.warning(
      'image_folder: %s has split folders %s; ignoring the %d other entries '
      'beside them: %s%s',
      manual_dir,
      '/, '.join(splits) + '/',
      len(outside),
      ', '.join(outside[:_MAX_LOGGED_OUTSIDE]),
      ', ...' if len(outside) > _MAX_LOGGED_OUTSIDE else '',
    )
  return splits


def find_source(manual_dir: Path) -> crops.CropSource:
  """Describes the images under `manual_dir` (see the module docstring).

  Raises:
    FileNotFoundError: one line naming `manual_dir` when it is missing or holds
      no image file.
  """
  check_folder(manual_dir)
  splits = find_splits(manual_dir)
  num_images = collections.Counter()
  ignored = collections.Counter()
  for split, folder in splits.items():
    for _, index in walk_files(folder):
      if index is None:
        ignored[split] += 1
      else:
        num_images[split] += 1
  if not sum(num_images.values()):
    where = ', '.join(str(f) for f in splits.values())
    raise FileNotFoundError(
      f'image_folder: no image files ({"/".join(EXTENSIONS)}, any case) '
      f'under {where}, searched recursively; {sum(ignored.values())} other '
      'files ignored'
    )
  for split, count in ignored.items():
    if count:
      log.info('image_folder %s: %d non-image files ignored', split, count)

  def tasks() -> Iterator[crops.PhotoTask]:
    for split, folder in splits.items():
      for path, index in walk_files(folder):
        if index is None:
          continue
        origin = path.relative_to(manual_dir).with_suffix('').as_posix()
        yield crops.PhotoTask(
          split=split,
          origin=origin,
          source=str(path),
          boxes=_WHOLE_IMAGE,
          normalized=True,
          path=str(path),
          crop_indices=[index],
          exif_orientation=True,
        )

  return crops.CropSource(
    f'image folder {manual_dir}',
    list(splits),
    tasks,
    num_photos=sum(num_images.values()),
    extra_counts={
      split: {'ignored_files': ignored[split], 'exif_oriented_photos': 0}
      for split in splits
    },
  )


def check_folder(folder: Path) -> None:
  """Raises a one-line FileNotFoundError when `folder` is missing or empty."""
  if not folder.is_dir():
    raise FileNotFoundError(f'image_folder: folder {folder} does not exist')
  if next(folder.iterdir(), None) is None:
    raise FileNotFoundError(f'image_folder: folder {folder} is empty')


class ImageFolder(crops.CropsBuilder):
  """Unlabelled whole images from a folder (recursive), one example a file."""

  name = 'image_folder'
  VERSION = '1.0.0'
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = crops.size_configs(ImageFolderConfig)
  DESCRIPTION = """\
Unlabelled images read recursively from a folder of the user's (manual_dir),
for pre-training on one's own photos. Each example is one image file (.jpg,
.jpeg, .png, .bmp, .webp, .tif, .tiff in any case) stored whole and turned
upright by its EXIF orientation: box = [0, 0, w, h], origin = its path
relative to manual_dir without extension (POSIX form), crop_index 0 (1, 2,
... for files differing only in the extension).

Splits: the sub-folders train/, val/, test/ of manual_dir when there is any
of them (nothing outside them is read), else everything is train. Hidden and
non-image files are ignored (ignored_files); files PIL cannot decode are
skipped (unreadable_photos)."""
  # The images are the user's: nothing to cite, no upstream terms.
  CITATION = (
    "% image_folder holds the user's own images: cite their source if they\n"
    '% come from a publication; there is no dataset paper.'
  )
  LICENSE = "The user's own data: its terms are the user's."
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
This is your own data; nothing is downloaded. Point manual_dir at a folder of
images (searched recursively; hidden files and folders are skipped); optional
sub-folders train/, val/, test/ become the splits."""

  def _download_and_prepare(self, dl_manager, download_config=None):
    # TFDS answers a missing or empty manual_dir with a multi-line message
    # about downloading artifacts; for a user's own folder one line says it.
    # Same default as TFDS's download manager: <download_dir>/manual.
    manual_dir = (download_config and download_config.manual_dir) or (
      dl_manager.download_dir / 'manual'
    )
    check_folder(Path(os.fspath(manual_dir)))
    super()._download_and_prepare(dl_manager, download_config)

  def _prepare_source(self, manual_dir: Path) -> crops.CropSource:
    return find_source(manual_dir)
