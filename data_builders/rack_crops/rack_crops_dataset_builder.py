"""`rack_crops`: labelled crops of rack photos (the evaluation gallery), split `train`.

`manual_dir` may hold (first match wins):
  * Pascal VOC: `Annotations/*.xml` + `JPEGImages/`, or a flat folder of
    `x.jpg` + `x.xml` (sub-folders searched too). The photo is resolved from
    `<filename>` (beside the XML, then in `JPEGImages/`), falling back to the
    XML stem with a common image extension. `origin` = photo file stem.
    Coordinates are taken as PIL crop boxes (no 1-based shift, as the thesis
    cropped them); numeric strings like `12.0` are rounded.
  * class folders of crops `<class>/<origin>_<k>.jpg`: each file is one crop,
    stored whole with `box` = [0, 0, w, h] (its place in the photo is unknown),
    `origin` and `crop_index` parsed from the name (`origin` = whole stem and
    index 0 when the name has no `_<k>` suffix).

`label` is a ClassLabel over the sorted class names found; `label_name` repeats
the name. The evaluator makes its own splits. Bad input follows
`data_builders.crops`; a malformed XML stops the build naming the file.

Placeholder names are not products: boxes (and class folders) named like
`__UNKNOWN` or `__WRONG` (`RackCropsConfig.placeholder_pattern`, default: a
name starting with `__`) are left out, logged with their names and counted in
`skipped_placeholder_boxes` (and in `boxes`), and get no class. Kept boxes keep
their annotation index as `crop_index`. The thesis's annotations hold 9 such
boxes (6 `__UNKNOWN`, 3 `__WRONG`), left out of its 1,643-crop gallery.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data_builders import crops

log = logging.getLogger(__name__)

SPLIT = 'train'
_CROP_NAME = re.compile(r'(.+)_(\d+)$')
# Annotation placeholders (`__UNKNOWN`, `__WRONG`), not products.
DEFAULT_PLACEHOLDER_PATTERN = '^__'
_PLACEHOLDER_KEY = 'skipped_placeholder_boxes'


@dataclasses.dataclass(eq=False)
class RackCropsConfig(crops.CropsConfig):
  """Config of `rack_crops`; see `crops.CropOptions` for the crop options.

  Attributes:
    placeholder_pattern: regular expression (`re.search`) for the names of
      placeholder boxes and class folders, which are left out; '' keeps every
      name.
  """

  placeholder_pattern: str = DEFAULT_PLACEHOLDER_PATTERN

  def __post_init__(self):
    super().__post_init__()
    try:
      re.compile(self.placeholder_pattern)
    except re.error as e:
      raise ValueError(
        f'placeholder_pattern {self.placeholder_pattern!r} is not a regular '
        f'expression: {e}'
      ) from None


def _placeholder_test(pattern: str) -> Callable[[str], bool]:
  regex = re.compile(pattern) if pattern else None
  return lambda name: regex is not None and regex.search(name) is not None


def _log_placeholders(pattern: str, skipped: list[tuple[str, str]]) -> None:
  """Logs the left-out (where, name) boxes: the first few, then a summary."""
  for where, name in skipped[: crops.MAX_LOGGED_BOX_EVENTS]:
    log.warning('%s: placeholder %r, skipped', where, name)
  if skipped:
    by_name = collections.Counter(name for _, name in skipped)
    log.warning(
      'rack_crops: left out %d placeholder boxes (names matching %r): %s',
      len(skipped),
      pattern,
      ', '.join(f'{name} x{n}' for name, n in sorted(by_name.items())),
    )


def _placeholder_counts(count: int) -> dict[str, dict[str, int]]:
  # Also in `boxes`, which counts every annotated box, as for other skips.
  return {SPLIT: {_PLACEHOLDER_KEY: count, 'boxes': count}}


@dataclasses.dataclass
class VocAnnotation:
  xml_path: Path
  filename: str | None
  size: tuple[int, int] | None
  labels: list[str]
  boxes: np.ndarray  # (n, 4) int64


def parse_voc(xml_path: Path) -> VocAnnotation:
  """Reads one Pascal VOC file.

  Raises:
    ValueError: naming the file (and object) when the XML is malformed.
  """
  try:
    root = ET.parse(xml_path).getroot()
  except ET.ParseError as e:
    raise ValueError(f'{xml_path}: malformed XML: {e}') from None
  if root.tag != 'annotation':
    raise ValueError(
      f'{xml_path}: root element is <{root.tag}>, expected <annotation>'
    )

  def number(element, tag: str, where: str) -> int:
    text = element.findtext(tag)
    try:
      return int(round(float(text)))
    except (TypeError, ValueError):
      raise ValueError(
        f'{xml_path}: {where}: <{tag}> must be a number, got {text!r}'
      ) from None

  size = None
  if (size_element := root.find('size')) is not None:
    size = (
      number(size_element, 'width', '<size>'),
      number(size_element, 'height', '<size>'),
    )
    if size[0] <= 0 or size[1] <= 0:
      size = None  # some tools write 0 when unknown
  labels, boxes = [], []
  for index, obj in enumerate(root.findall('object')):
    where = f'object {index}'
    name = (obj.findtext('name') or '').strip()
    if not name:
      raise ValueError(f'{xml_path}: {where}: missing <name>')
    bndbox = obj.find('bndbox')
    if bndbox is None:
      raise ValueError(f'{xml_path}: {where} ({name}): missing <bndbox>')
    labels.append(name)
    boxes.append(
      [
        number(bndbox, tag, f'{where} ({name})')
        for tag in ('xmin', 'ymin', 'xmax', 'ymax')
      ]
    )
  filename = (root.findtext('filename') or '').strip() or None
  return VocAnnotation(
    xml_path,
    filename,
    size,
    labels,
    np.array(boxes, dtype=np.int64).reshape(-1, 4),
  )


def _resolve_photo(
  annotation: VocAnnotation, voc_root: Path | None
) -> Path | None:
  folders = [annotation.xml_path.parent]
  if voc_root is not None:
    folders.insert(0, voc_root / 'JPEGImages')
  if annotation.filename:
    for folder in folders:
      if (folder / annotation.filename).is_file():
        return folder / annotation.filename
  for folder in folders:
    if photo := crops.find_photo(folder, annotation.xml_path.stem):
      return photo
  return None


def _voc_source(
  xml_paths: list[Path],
  voc_root: Path | None,
  description: str,
  placeholder_pattern: str,
) -> crops.CropSource:
  annotations = [
    parse_voc(p) for p in xml_paths
  ]  # small; parsed up front for the label names
  is_placeholder = _placeholder_test(placeholder_pattern)
  kept = [
    [i for i, label in enumerate(a.labels) if not is_placeholder(label)]
    for a in annotations
  ]
  skipped = [
    (f'{a.xml_path}: object {i} {a.boxes[i].tolist()}', label)
    for a in annotations
    for i, label in enumerate(a.labels)
    if is_placeholder(label)
  ]
  _log_placeholders(placeholder_pattern, skipped)
  names = sorted(
    {a.labels[i] for a, indices in zip(annotations, kept) for i in indices}
  )

  def tasks():
    for annotation, indices in zip(annotations, kept):
      photo = _resolve_photo(annotation, voc_root)
      stem = (
        Path(annotation.filename).stem
        if annotation.filename
        else annotation.xml_path.stem
      )
      yield crops.PhotoTask(
        split=SPLIT,
        origin=photo.stem if photo else stem,
        source=str(
          photo or annotation.xml_path.with_name(annotation.filename or stem)
        ),
        boxes=annotation.boxes[indices],
        path=str(photo) if photo else None,
        labels=[annotation.labels[i] for i in indices],
        # The annotation index, so that crop ids do not shift past a skip.
        crop_indices=indices,
        expected_size=annotation.size,
      )

  return crops.CropSource(
    description,
    [SPLIT],
    tasks,
    num_photos=len(annotations),
    label_names=names,
    extra_counts=_placeholder_counts(len(skipped)),
  )


def _class_folder_source(
  manual_dir: Path, class_dirs: list[Path], placeholder_pattern: str
) -> crops.CropSource:
  is_placeholder = _placeholder_test(placeholder_pattern)
  all_files = [
    (d.name, f)
    for d in class_dirs
    for f in sorted(d.iterdir())
    if f.suffix in crops.IMAGE_EXTENSIONS
  ]
  files = [(name, f) for name, f in all_files if not is_placeholder(name)]
  skipped = [(str(f), name) for name, f in all_files if is_placeholder(name)]
  _log_placeholders(placeholder_pattern, skipped)
  names = sorted({name for name, _ in files})

  def tasks():
    for label, path in files:
      match = _CROP_NAME.fullmatch(path.stem)
      origin, index = (
        (match.group(1), int(match.group(2))) if match else (path.stem, 0)
      )
      # One normalised full-image box: [0, 0, w, h] once the size is decoded.
      yield crops.PhotoTask(
        split=SPLIT,
        origin=origin,
        source=str(path),
        boxes=np.array([[0.5, 0.5, 1.0, 1.0]]),
        normalized=True,
        path=str(path),
        labels=[label],
        crop_indices=[index],
      )

  return crops.CropSource(
    f'class folders {manual_dir}',
    [SPLIT],
    tasks,
    num_photos=len(files),
    label_names=names,
    extra_counts=_placeholder_counts(len(skipped)),
  )


def find_source(
  manual_dir: Path, placeholder_pattern: str = DEFAULT_PLACEHOLDER_PATTERN
) -> crops.CropSource:
  """Detects the rack layout in `manual_dir` (see the module docstring).

  Boxes and class folders whose name matches `placeholder_pattern` are left
  out ('' keeps all).
  """
  if (manual_dir / 'Annotations').is_dir():
    xml_paths = sorted((manual_dir / 'Annotations').glob('*.xml'))
    return _voc_source(
      xml_paths,
      manual_dir,
      f'Pascal VOC folders {manual_dir}',
      placeholder_pattern,
    )
  xml_paths = sorted(manual_dir.rglob('*.xml'))
  if xml_paths:
    return _voc_source(
      xml_paths,
      None,
      f'Pascal VOC files in {manual_dir}',
      placeholder_pattern,
    )
  class_dirs = (
    sorted(d for d in manual_dir.iterdir() if d.is_dir())
    if manual_dir.is_dir()
    else []
  )
  if class_dirs:
    return _class_folder_source(manual_dir, class_dirs, placeholder_pattern)
  raise FileNotFoundError(
    f'{manual_dir}: no Pascal VOC *.xml files and no class folders of crops'
  )


class RackCrops(crops.CropsBuilder):
  """Labelled product crops of rack photos (Pascal VOC boxes or class folders)."""

  name = 'rack_crops'
  # 1.1.0: a 1.0.0 build may hold placeholder classes; a new version makes the
  # builds rebuild (next to the old one) instead of silently reusing it.
  VERSION = '1.1.0'
  RELEASE_NOTES = {
    '1.0.0': 'Initial release.',
    '1.1.0': 'Placeholder boxes and class folders (`__UNKNOWN`, `__WRONG`: '
    '`placeholder_pattern`) are left out and counted '
    '(`skipped_placeholder_boxes`) instead of kept as classes.',
  }
  BUILDER_CONFIGS = crops.size_configs(RackCropsConfig)
  LABELLED = True
  DESCRIPTION = """\
Labelled product crops of the user's own rack photos, the evaluation gallery
(as the thesis's 27 photos of a small shop, 1,643 crops of 406 classes). Each
example is one annotated box of a Pascal VOC file cut out of its photo, or one
crop file of a class folder stored whole (box = [0, 0, w, h]); label is the
box's class name, origin the photo stem, crop_index the box's index in its
annotation file (kept past skipped boxes).

Split: train only (all examples); the evaluator makes its own splits.
Placeholder boxes and class folders (names matching the config's
placeholder_pattern, default '^__': __UNKNOWN, __WRONG) are left out and
counted (skipped_placeholder_boxes)."""
  # The photos are the user's: nothing to cite, no upstream terms.
  CITATION = (
    "% rack_crops holds the user's own rack photos and annotations: cite their\n"
    '% source if they come from a publication; there is no dataset paper.'
  )
  LICENSE = "The user's own data: its terms are the user's."
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
This is your own data; nothing is downloaded. Put in manual_dir one of:
  * the rack photos with their Pascal VOC XML files (one <object> with <name>
    and <bndbox> per product), flat (x.jpg + x.xml, sub-folders searched
    too) or as Annotations/*.xml + JPEGImages/;
  * class folders of crops, <class>/<origin>_<k>.jpg (one crop a file)."""

  def _prepare_source(self, manual_dir: Path) -> crops.CropSource:
    return find_source(manual_dir, self.builder_config.placeholder_pattern)
