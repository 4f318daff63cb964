"""Shared logic of the crop datasets (`sku110k_crops`, `rack_crops`,
`image_folder`, `grocery_store`).

A source (one per builder) turns annotated photos into `PhotoTask`s; this module
decodes each photo once, clips/filters its boxes, crops, resizes, encodes and
serialises the crops in a process pool (bounded window of photos in flight,
results in input order), and streams the records into array_record shards, one
writer per split, so memory stays bounded whatever the archive size. With
TensorFlow installed, `file_format='tfrecord'` writes TFRecord shards instead
(for `as_dataset()` / `tfds.load`); without it that is a one-line error.

Why not `GeneratorBasedBuilder`: its writer keeps a whole split in memory up to
1 GB and then spills to temporary files through `tf.io.gfile`, so a real-sized
build fails without TensorFlow (and `ShardBasedBuilder` tees every shard in
memory). `CropsBuilder` overrides `_download_and_prepare` and writes the
shards itself; reading goes through the standard TFDS path
(`tfds.data_source`, `builder.as_data_source()`, `tfds.builder_from_directory`).

Box semantics: `(x1, y1, x2, y2)` = pixels `[y1:y2, x1:x2]` (PIL `crop`), in
the stored pixel orientation of the photo: EXIF orientation is not applied,
because the annotations (SKU110K CSVs, LabelImg VOC files) refer to the stored
pixels. Only a task with `exif_orientation` (unannotated whole images) turns
its crops upright after cropping (`exif_oriented_photos`); its boxes stay in
stored pixels.

Bad input rules (counted per split in `info.metadata['counts']`, and logged with
file names): boxes reaching outside the photo are clipped (`clipped_boxes`) or,
with `clip=False`, skipped (`skipped_outside_boxes`, as are boxes wholly
outside the photo either way); empty/inverted boxes (`skipped_empty_boxes`) and boxes with a side below `min_side`
(`skipped_small_boxes`) are skipped, and so is a box that repeats an earlier
box of the same photo (`skipped_duplicate_boxes`); missing photos (`missing_photos`) and
photos PIL cannot fully decode (`unreadable_photos`: corrupt or truncated) are
skipped with their boxes (`boxes_in_skipped_photos`). When the annotated photo
size differs from the decoded one, the decoded size wins (`size_mismatch_photos`).
Non-RGB photos (grayscale, CMYK, palette, RGBA) are converted to RGB
(`converted_to_rgb_photos`).
"""

from __future__ import annotations

import abc
import collections
import concurrent.futures
import dataclasses
import importlib.util
import inspect
import io
import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from array_record.python import array_record_module
from etils import epath
from PIL import Image
from tensorflow_datasets.proto import tf_example_pb2

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.JPG', '.JPEG', '.PNG')
# Per-box events are logged individually only up to this many per kind and split.
MAX_LOGGED_BOX_EVENTS = 20
_ENCODINGS = ('jpeg', 'png')
# Counts always present in `info.metadata['counts'][split]` (zeros included).
COUNT_KEYS = (
  'photos',
  'boxes',
  'crops',
  'clipped_boxes',
  'skipped_outside_boxes',
  'skipped_empty_boxes',
  'skipped_small_boxes',
  'missing_photos',
  'unreadable_photos',
  'boxes_in_skipped_photos',
  'size_mismatch_photos',
  'converted_to_rgb_photos',
  'unannotated_photos',
  'skipped_duplicate_boxes',
)


@dataclasses.dataclass(eq=False)
class CropOptions:
  """How crops are stored: the `CropsConfig` fields the workers need.

  Attributes:
    shorter_side: shrink each crop so its shorter side is this many pixels
      (aspect kept, bilinear with antialiasing); None stores native crops.
    allow_upscale: with `shorter_side`, also enlarge smaller crops. Off by
      default: enlarged pixels add no information, cost storage and build
      time, and the input pipeline resizes anyway (one interpolation, not two).
    min_side: skip boxes whose width or height (after clipping) is below this.
    clip: clip boxes reaching outside the photo (True) or skip them (False).
    encoding: 'jpeg' or 'png' (lossless).
    jpeg_quality: JPEG quality for `encoding='jpeg'`.
    png_compress_level: zlib level for `encoding='png'` (1: fast, still lossless).
  """

  shorter_side: int | None = None
  allow_upscale: bool = False
  min_side: int = 1
  clip: bool = True
  encoding: str = 'jpeg'
  jpeg_quality: int = 95
  png_compress_level: int = 1

  def __post_init__(self):
    if self.encoding not in _ENCODINGS:
      raise ValueError(
        f'encoding must be one of {_ENCODINGS}, got {self.encoding!r}'
      )
    if self.shorter_side is not None and self.shorter_side < 1:
      raise ValueError(
        f'shorter_side must be >= 1 or None, got {self.shorter_side}'
      )
    if self.min_side < 1:
      raise ValueError(f'min_side must be >= 1, got {self.min_side}')
    if not 1 <= self.jpeg_quality <= 100:
      raise ValueError(
        f'jpeg_quality must be in 1..100, got {self.jpeg_quality}'
      )


# CropOptions first among the bases so that the fields come after the
# BuilderConfig ones (name, version, ...), as dataclasses need for defaults.
# Not frozen and eq=False because BuilderConfig is neither: a frozen base
# cannot be mixed in, and eq would make the configs unhashable.
@dataclasses.dataclass(eq=False)
class CropsConfig(CropOptions, tfds.core.BuilderConfig):
  """A crop dataset's TFDS config: `name`, ... and the `CropOptions`."""

  @classmethod
  def option_names(cls) -> tuple[str, ...]:
    """The fields a build may set: `CropOptions` and a subclass's own."""
    base = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in base)

  def crop_options(self) -> CropOptions:
    """The options alone, small and picklable for the worker processes."""
    return CropOptions(
      **{f.name: getattr(self, f.name) for f in dataclasses.fields(CropOptions)}
    )


def size_configs(config_cls: type[CropsConfig]) -> list[CropsConfig]:
  """The standard configs: `native` (thesis), `256` and `128` (shorter side)."""
  return [
    config_cls(
      name='native', description='Native-resolution crops (as the thesis).'
    ),
    config_cls(
      name='256',
      shorter_side=256,
      description='Crops shrunk to shorter side <= 256.',
    ),
    config_cls(
      name='128',
      shorter_side=128,
      description='Crops shrunk to shorter side <= 128.',
    ),
  ]


@dataclasses.dataclass
class PhotoTask:
  """One annotated photo to crop.

  Attributes:
    split: split the crops go to.
    origin: photo id (file stem), stored as `origin`.
    source: file name or archive member, for log messages.
    boxes: (n, 4) pixel boxes x1,y1,x2,y2 in annotation order, or with
      `normalized` (n, 4) floats xc,yc,w,h in 0-1 (YOLO).
    data: the encoded photo, or None to read `path` in the worker.
    path: photo file; None with `data` None means the photo is missing.
    normalized: boxes are YOLO-normalised (converted with the decoded size).
    labels: class name per box (labelled datasets) or None.
    crop_indices: crop index per box; default 0..n-1.
    expected_size: (width, height) stated by the annotations, if any.
    exif_orientation: turn the crops as the photo's EXIF orientation says
      (boxes stay in stored pixels).
    extras: per box, the values of the builder's extra features
      (`crop_features(extra=...)`), encoded: ClassLabel ids as ints, text as
      str; None when the builder has none.
  """

  split: str
  origin: str
  source: str
  boxes: np.ndarray
  data: bytes | None = None
  path: str | None = None
  normalized: bool = False
  labels: Sequence[str] | None = None
  crop_indices: Sequence[int] | None = None
  expected_size: tuple[int, int] | None = None
  exif_orientation: bool = False
  extras: Sequence[dict[str, int | str]] | None = None


# EXIF orientation -> the transpose that shows the photo upright (as
# `PIL.ImageOps.exif_transpose`).
_EXIF_TRANSPOSE = {
  2: Image.Transpose.FLIP_LEFT_RIGHT,
  3: Image.Transpose.ROTATE_180,
  4: Image.Transpose.FLIP_TOP_BOTTOM,
  5: Image.Transpose.TRANSPOSE,
  6: Image.Transpose.ROTATE_270,
  7: Image.Transpose.TRANSVERSE,
  8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG = 0x0112


def _exif_transpose(image: Image.Image) -> Image.Transpose | None:
  """The transpose that shows `image` upright; None if upright or unknown."""
  try:
    orientation = image.getexif().get(_EXIF_ORIENTATION_TAG)
  except Exception:  # pylint: disable=broad-except
    # EXIF is optional metadata: a malformed block never costs the photo.
    return None
  return _EXIF_TRANSPOSE.get(orientation)


@dataclasses.dataclass
class PhotoResult:
  split: str
  records: list[bytes]
  counts: collections.Counter
  events: list[tuple[str, str]]  # (kind, message)


def crop_features(
  encoding: str,
  labelled: bool,
  extra: dict[str, tfds.features.FeatureConnector] | None = None,
) -> tfds.features.FeaturesDict:
  """Example features of a crop dataset (the contract other code reads).

  `extra` adds a builder's own features beside the contract's; `serialize_crop`
  writes them from ints (`Scalar`, `ClassLabel`) and strings (`Text`).
  """
  features = {
    'image': tfds.features.Image(
      shape=(None, None, 3), encoding_format=encoding
    ),
    'origin': tfds.features.Text(),
    'box': tfds.features.Tensor(shape=(4,), dtype=np.int32),
    'crop_index': tfds.features.Scalar(dtype=np.int32),
    'crop_id': tfds.features.Text(),
  }
  if labelled:
    # Names are discovered at build time (`ClassLabel.names = ...`).
    features['label'] = tfds.features.ClassLabel()
    features['label_name'] = tfds.features.Text()
  for name, feature in (extra or {}).items():
    if name in features:
      raise ValueError(f'extra feature {name!r} is one of the crop features')
    features[name] = feature
  return tfds.features.FeaturesDict(features)


def serialize_crop(
  image: bytes,
  origin: str,
  box: Sequence[int],
  crop_index: int,
  label: int | None = None,
  label_name: str | None = None,
  extra: dict[str, int | str] | None = None,
) -> bytes:
  """Serialises one crop as `crop_features(...)` would, without TFDS's generic
  per-feature dispatch (~70 us a crop); `crops_test` checks it against TFDS.

  `extra` holds the values of `crop_features(extra=...)`'s features: ints
  (ClassLabel ids, scalars) and strings (text).
  """
  proto = tf_example_pb2.Example()
  feature = proto.features.feature
  feature['image'].bytes_list.value.append(image)
  feature['origin'].bytes_list.value.append(origin.encode())
  feature['box'].int64_list.value.extend(box)
  feature['crop_index'].int64_list.value.append(crop_index)
  feature['crop_id'].bytes_list.value.append(f'{origin}_{crop_index}'.encode())
  if label is not None:
    feature['label'].int64_list.value.append(label)
    feature['label_name'].bytes_list.value.append(label_name.encode())
  for name, value in (extra or {}).items():
    if isinstance(value, str):
      feature[name].bytes_list.value.append(value.encode())
    else:
      feature[name].int64_list.value.append(int(value))
  return proto.SerializeToString()


# ----------------------------------------------------------------------------
# Per-photo work (runs in the worker processes).


def _pixel_boxes(task: PhotoTask, width: int, height: int) -> np.ndarray:
  if not task.normalized:
    return np.asarray(task.boxes, dtype=np.int64).reshape(-1, 4)
  xc, yc, w, h = np.asarray(task.boxes, dtype=np.float64).reshape(-1, 4).T
  return np.stack(
    [
      np.round((xc - w / 2) * width),
      np.round((yc - h / 2) * height),
      np.round((xc + w / 2) * width),
      np.round((yc + h / 2) * height),
    ],
    axis=1,
  ).astype(np.int64)


def _draft_scale(short_sides: np.ndarray, shorter_side: int | None) -> int:
  """Largest JPEG DCT reduction (1, 2, 4, 8) keeping every crop >= shorter_side."""
  if shorter_side is None or short_sides.size == 0:
    return 1
  smallest = int(short_sides.min())
  for scale in (8, 4, 2):
    if smallest // scale >= shorter_side:
      return scale
  return 1


def _output_size(
  width: int, height: int, options: CropOptions
) -> tuple[int, int]:
  side = options.shorter_side
  short = min(width, height)
  if (
    side is None
    or short == side
    or (short < side and not options.allow_upscale)
  ):
    return width, height
  if width <= height:
    return side, max(1, round(height * side / width))
  return max(1, round(width * side / height)), side


@dataclasses.dataclass
class Crop:
  """One box cut from a photo (`cut_boxes`), not yet encoded."""

  image: Image.Image  # 'RGB', or 'YCbCr' when options.encoding is 'jpeg'
  box: tuple[int, int, int, int]  # in the photo, clipped
  index: int  # crop_index: the box's place in the photo's annotation
  label_name: str | None
  extra: dict[str, int | str] | None


@dataclasses.dataclass
class CutPhoto:
  split: str
  crops: list[Crop]
  counts: collections.Counter
  events: list[tuple[str, str]]  # (kind, message)


def encode_crop(image: Image.Image, options: CropOptions) -> bytes:
  """A crop's stored bytes: JPEG at `options.jpeg_quality`, or PNG."""
  buffer = io.BytesIO()
  if options.encoding == 'jpeg':
    image.save(buffer, 'JPEG', quality=options.jpeg_quality)
  else:
    image.save(buffer, 'PNG', compress_level=options.png_compress_level)
  return buffer.getvalue()


def crop_photo(
  task: PhotoTask, options: CropOptions, label_ids: dict[str, int] | None = None
) -> PhotoResult:
  """Cuts one photo's boxes (`cut_boxes`) and returns its serialized crop
  examples and counts.

  `label_ids` maps class names to ClassLabel ids (labelled datasets).
  """
  cut = cut_boxes(task, options)
  records = [
    serialize_crop(
      encode_crop(crop.image, options),
      task.origin,
      crop.box,
      crop.index,
      label_ids[crop.label_name] if crop.label_name is not None else None,
      crop.label_name,
      crop.extra,
    )
    for crop in cut.crops
  ]
  return PhotoResult(cut.split, records, cut.counts, cut.events)


def cut_boxes(task: PhotoTask, options: CropOptions) -> CutPhoto:
  """Decodes one photo and cuts its boxes, checked: clipped, skipped (empty,
  outside, small, duplicate) and unreadable photos counted, each with an
  event naming the file. What a build stores and recognize embeds.
  """
  counts = collections.Counter()
  events = []
  result = CutPhoto(task.split, [], counts, events)
  num_boxes = len(task.boxes)
  counts['boxes'] += num_boxes

  def skip_photo(kind: str, why: str) -> CutPhoto:
    counts[kind] += 1
    counts['boxes_in_skipped_photos'] += num_boxes
    source = str(task.source).encode('utf-8', 'backslashreplace').decode()
    events.append(
      (
        kind,
        f'{source}: {why}; skipped the photo and its {num_boxes} boxes',
      )
    )
    return result

  # A name with bytes that are not UTF-8 (os.listdir gives them as
  # surrogates) cannot be stored as text: skipped like an unreadable photo.
  for name in (task.origin, task.source, task.path):
    try:
      str(name).encode('utf-8')
    except UnicodeEncodeError:
      return skip_photo(
        'unreadable_photos', 'its file name is not valid UTF-8 (rename it)'
      )

  data = task.data
  if data is None:
    if task.path is None:
      return skip_photo('missing_photos', 'photo not found')
    try:
      data = Path(task.path).read_bytes()
    except FileNotFoundError:
      return skip_photo('missing_photos', 'photo not found')
  try:
    image = Image.open(io.BytesIO(data))
    width, height = image.size
  except Image.UnidentifiedImageError:
    # PIL's own message names only a BytesIO object at some address.
    why = 'empty file' if not data else 'not an image format PIL knows'
    return skip_photo('unreadable_photos', f'cannot decode ({why})')
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    return skip_photo('unreadable_photos', f'cannot decode ({e})')

  raw = _pixel_boxes(task, width, height)
  clipped = raw.copy()
  np.clip(clipped[:, 0::2], 0, width, out=clipped[:, 0::2])
  np.clip(clipped[:, 1::2], 0, height, out=clipped[:, 1::2])
  outside = np.any(clipped != raw, axis=1)
  box_w = clipped[:, 2] - clipped[:, 0]
  box_h = clipped[:, 3] - clipped[:, 1]
  empty = (box_w <= 0) | (box_h <= 0)
  # A proper box that clipping empties lies wholly outside the photo: it is
  # counted as outside, not as an empty (zero-size or inverted) box.
  inverted = (raw[:, 2] <= raw[:, 0]) | (raw[:, 3] <= raw[:, 1])
  beyond = empty & ~inverted
  empty &= inverted
  if not options.clip:
    skipped_outside = (outside & ~empty) | beyond
    empty &= ~outside
  else:
    skipped_outside = beyond
  small = (
    ~empty & ~skipped_outside & (np.minimum(box_w, box_h) < options.min_side)
  )
  keep = ~(empty | skipped_outside | small)
  # The same box twice in one photo would give two identical crops: in a
  # labeled gallery each would be the other's perfect match. Keep the first.
  duplicate = np.zeros_like(keep)
  seen = set()
  for i in np.flatnonzero(keep):
    key = tuple(clipped[i].tolist())
    duplicate[i] = key in seen
    seen.add(key)
  keep &= ~duplicate
  was_clipped = keep & outside

  # JPEG DCT-domain downscaling: decode the photo smaller when every kept crop
  # stays at least the stored size (resized configs only).
  scale = _draft_scale(np.minimum(box_w, box_h)[keep], options.shorter_side)
  want_ycbcr = options.encoding == 'jpeg'  # skip YCbCr->RGB->YCbCr round trip
  try:
    if image.format == 'JPEG':
      image.draft(
        'YCbCr' if want_ycbcr else None,
        (width // scale, height // scale) if scale > 1 else None,
      )
    image.load()
  except (OSError, SyntaxError, ValueError) as e:
    return skip_photo('unreadable_photos', f'cannot decode ({e})')
  # After `load`: PNG's `getexif` loads the pixels itself, and a failed load
  # there would let the `load` above pass on a half-decoded image.
  transpose = _exif_transpose(image) if task.exif_orientation else None
  scale_x, scale_y = width / image.size[0], height / image.size[1]
  if image.mode not in ('RGB', 'YCbCr') or (
    image.mode == 'YCbCr' and not want_ycbcr
  ):
    if image.mode not in ('RGB', 'YCbCr'):
      counts['converted_to_rgb_photos'] += 1
    image = image.convert('RGB')

  counts['photos'] += 1
  if transpose is not None:
    counts['exif_oriented_photos'] += 1
  if task.expected_size is not None and tuple(task.expected_size) != (
    width,
    height,
  ):
    counts['size_mismatch_photos'] += 1
    events.append(
      (
        'size_mismatch_photos',
        f'{task.source}: annotated size {tuple(task.expected_size)} != '
        f'decoded size {(width, height)}; using the decoded size',
      )
    )
  for kind, mask, what in (
    ('clipped_boxes', was_clipped, 'reaches outside the photo, clipped'),
    (
      'skipped_outside_boxes',
      skipped_outside,
      'lies (partly, or with clipping wholly) outside the photo, skipped',
    ),
    ('skipped_empty_boxes', empty, 'is empty or inverted, skipped'),
    ('skipped_small_boxes', small, f'has a side < {options.min_side}, skipped'),
    ('skipped_duplicate_boxes', duplicate, 'repeats an earlier box, skipped'),
  ):
    for i in np.flatnonzero(mask):
      counts[kind] += 1
      events.append(
        (
          kind,
          f'{task.source}: box {i} {raw[i].tolist()} {what} '
          f'(photo {width}x{height})',
        )
      )

  crop_indices = (
    task.crop_indices if task.crop_indices is not None else range(num_boxes)
  )
  for i in np.flatnonzero(keep):
    x1, y1, x2, y2 = (int(v) for v in clipped[i])
    out_size = _output_size(x2 - x1, y2 - y1, options)
    if out_size == (x2 - x1, y2 - y1) and scale == 1:
      crop = image.crop((x1, y1, x2, y2))
    else:
      crop = image.resize(
        out_size,
        Image.Resampling.BILINEAR,
        box=(x1 / scale_x, y1 / scale_y, x2 / scale_x, y2 / scale_y),
      )
    if transpose is not None:
      crop = crop.transpose(transpose)
    result.crops.append(
      Crop(
        crop,
        (x1, y1, x2, y2),
        int(crop_indices[i]),
        task.labels[i] if task.labels is not None else None,
        task.extras[i] if task.extras is not None else None,
      )
    )
  counts['crops'] += len(result.crops)
  return result


_WORKER_STATE: tuple | None = None


def _init_worker(options, label_ids):
  global _WORKER_STATE
  _WORKER_STATE = (options, label_ids)


def _crop_in_worker(task: PhotoTask) -> PhotoResult:
  return crop_photo(task, *_WORKER_STATE)


# ----------------------------------------------------------------------------
# Parallel ordered map and streaming writer.


def ordered_parallel_map(
  fn: Callable[[Any], Any],
  items: Iterable[Any],
  *,
  workers: int,
  window: int | None = None,
  initializer=None,
  initargs: tuple = (),
) -> Iterator[Any]:
  """Yields `fn(item)` in input order, at most `window` items in flight.

  Unlike `Pool.imap`, the input iterator is pulled only as results are consumed,
  so a streamed archive is never read ahead of the window. `workers=0` runs
  inline (no processes). Workers start by forkserver (safe beside threads).
  """
  if workers <= 0:
    if initializer is not None:
      initializer(*initargs)
    yield from map(fn, items)
    return
  window = window or 3 * workers
  context = multiprocessing.get_context('forkserver')
  context.set_forkserver_preload([__name__])
  iterator = iter(items)
  pending = collections.deque()  # (item, future)
  yielded = False
  try:
    with concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=context, initializer=initializer, initargs=initargs
    ) as pool:
      try:
        for item in iterator:
          pending.append((item, pool.submit(fn, item)))
          if len(pending) >= window:
            result = pending[0][1].result()  # Kept in `pending` if it fails.
            pending.popleft()
            yield result
            yielded = True
        while pending:
          result = pending[0][1].result()
          pending.popleft()
          yield result
          yielded = True
      finally:
        for _, future in pending:
          future.cancel()
  except concurrent.futures.BrokenExecutor:
    if yielded:
      raise
    # No worker ever started: typically a plain script that builds at its
    # top level without `if __name__ == '__main__':` (each worker re-runs
    # the script and dies). The same work in this process instead.
    log.warning(
      'Worker processes could not start (a script that builds a dataset at '
      "its top level needs an `if __name__ == '__main__':` guard to use "
      'them); building in this process instead.'
    )
    yield from ordered_parallel_map(
      fn,
      itertools.chain((item for item, _ in pending), iterator),
      workers=0,
      initializer=initializer,
      initargs=initargs,
    )


class ShardedArrayRecordWriter:
  """Streams serialized examples of one split into array_record shards.

  Shards roll over at `max_shard_bytes`; they are renamed to the TFDS names
  (`...-of-NNNNN`) on `close()` since their number is known only then. With
  `file_format` tfrecord the shards are TFRecord files instead.
  """

  def __init__(
    self,
    filename_template,
    file_format=tfds.core.FileFormat.ARRAY_RECORD,
    max_shard_bytes: int = 256 << 20,
  ):
    self._template = filename_template
    self._tfrecord = tfds.core.FileFormat(file_format) == (
      tfds.core.FileFormat.TFRECORD
    )
    self._max_shard_bytes = max_shard_bytes
    self._paths: list[Path] = []
    self._lengths: list[int] = []
    self._bytes = 0
    self._shard_bytes = 0
    self._writer = None

  def write(self, record: bytes) -> None:
    if self._writer is None or self._shard_bytes >= self._max_shard_bytes:
      self._close_shard()
      path = Path(os.fspath(self._template.data_dir)) / (
        f'{self._template.split}.partial-shard-{len(self._paths):05d}'
      )
      if self._tfrecord:
        # TFRecord framing (length, CRCs) without TensorFlow: tensorboardX
        # writes its event files in the same format.
        from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top

        self._writer = record_writer.RecordWriter(os.fspath(path))
      else:
        # Records are JPEG/PNG already: zstd (array_record's default) costs CPU
        # for ~nothing.
        self._writer = array_record_module.ArrayRecordWriter(
          os.fspath(path), 'group_size:1,uncompressed'
        )
      self._paths.append(path)
      self._lengths.append(0)
      self._shard_bytes = 0
    self._writer.write(record)
    self._lengths[-1] += 1
    self._shard_bytes += len(record)
    self._bytes += len(record)

  def _close_shard(self):
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  @property
  def num_examples(self) -> int:
    return sum(self._lengths)

  def close(self) -> tfds.core.SplitInfo | None:
    """Finalises the shards; None (and no files) when nothing was written."""
    self._close_shard()
    if not self._paths:
      return None
    for index, path in enumerate(self._paths):
      final = self._template.sharded_filepath(
        shard_index=index, num_shards=len(self._paths)
      )
      path.rename(os.fspath(final))
    return tfds.core.SplitInfo(
      name=self._template.split,
      shard_lengths=list(self._lengths),
      num_bytes=self._bytes,
      filename_template=self._template,
    )


# ----------------------------------------------------------------------------
# Base builder.


def check_file_format(file_format) -> tfds.core.FileFormat:
  """The format a build writes: array_record (default), or tfrecord with TF.

  tfrecord is what `as_dataset()` / `tfds.load` read, and only with
  TensorFlow (`pip install -e '.[tfds-cli]'`), so without it a one-line
  ValueError says so. Writing it needs no TensorFlow.
  """
  name = getattr(file_format, 'value', file_format) or 'array_record'
  if name not in ('array_record', 'tfrecord'):
    raise ValueError(
      f"crop builders write 'array_record' (default) or 'tfrecord', got "
      f'{file_format!r}'
    )
  if name == 'tfrecord' and importlib.util.find_spec('tensorflow') is None:
    raise ValueError(
      "file_format='tfrecord' needs TensorFlow, which is not installed "
      "(pip install -e '.[tfds-cli]'); without it, build the default "
      "'array_record' and read it with tfds.data_source"
    )
  return tfds.core.FileFormat(name)


def common_description(labelled: bool, label_text: str | None = None) -> str:
  """The part of `info.description` every crop builder shares.

  `label_text` replaces the sentence's default labels part (`, label
  (ClassLabel over the sorted class names found) and label_name`).
  """
  label = (
    ', label (ClassLabel over the sorted class names found) and label_name'
    if labelled
    else ''
  )
  if label_text is not None:
    label = label_text
  return f"""\
Features: image (the crop: JPEG quality 95, or PNG with encoding='png'),
origin (the photo id), box (int32 x1, y1, x2, y2 in the photo's stored pixels
after clipping, PIL crop convention: pixels [y1:y2, x1:x2]), crop_index and
crop_id (<origin>_<crop_index>){label}.

Bad input: boxes reaching outside the photo are clipped to it (clip=False
skips them instead); boxes left empty or inverted, with a side below
min_side, or repeating an earlier box of the same photo are skipped; missing
and undecodable photos are skipped with their boxes. Every case is counted per
split in info.metadata['counts'] and logged with the file name; a malformed
annotation file stops the build naming the file.

Configs: native (crops as cut), 256 and 128 (shorter side shrunk to at most
256 / 128 pixels, aspect kept, never enlarged). Files: array_record, read
without TensorFlow through tfds.data_source or builder.as_data_source().

Manual data: the input is read from manual_dir (`python -m data_builders.build
NAME --manual_dir DIR --data_dir OUT`, or `tfds build ... --manual_dir DIR`);
see MANUAL_DOWNLOAD_INSTRUCTIONS for what goes there."""


class CropsBuilder(tfds.core.dataset_builder.FileReaderBuilder, abc.ABC):
  """Base of the crop builders: subclasses say where the photos and boxes are.

  Subclasses implement `_prepare_source(manual_dir)` returning a `CropSource`,
  and may extend `_features()` (`crop_features(..., extra=...)`). Keyword
  `num_workers` (default: all cores, 0 = inline) sets the process pool size.
  """

  LABELLED = False
  # `info.description` is this builder's part (None: the class docstring)
  # followed by `common_description(LABELLED, LABEL_DESCRIPTION)`.
  DESCRIPTION: str | None = None
  LABEL_DESCRIPTION: str | None = None
  # `info.homepage`, `info.citation` (BibTeX) and `info.license` (the terms the
  # source states; crops cut from a dataset are under that dataset's terms).
  HOMEPAGE: str | None = None
  CITATION: str | None = None
  LICENSE: str | None = None

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path | None:
    # TFDS 4.9.10 resolves this through `importlib_resources`, a package it does
    # not install; the class file is all it needs (checksums, docs).
    return epath.Path(inspect.getfile(cls))

  def __init__(
    self, *, num_workers: int | None = None, file_format=None, **kwargs
  ):
    explicit = None if file_format is None else check_file_format(file_format)
    super().__init__(file_format=explicit, **kwargs)
    # Unset, TFDS keeps the format of a build on disk (`tfds.load` of a
    # tfrecord build) and otherwise picks tfrecord; ours is array_record.
    on_disk = (epath.Path(self.data_dir) / 'dataset_info.json').exists()
    if explicit is None and not on_disk:
      self.info.set_file_format(
        tfds.core.FileFormat.ARRAY_RECORD, override=True
      )
    self.num_workers = (
      (os.cpu_count() or 1) if num_workers is None else num_workers
    )
    self.build_counts: dict[str, dict[str, int]] = {}

  def _info(self) -> tfds.core.DatasetInfo:
    own = (self.DESCRIPTION or self.__doc__ or '').strip()
    return tfds.core.DatasetInfo(
      builder=self,
      description=(
        f'{own}\n\n{common_description(self.LABELLED, self.LABEL_DESCRIPTION)}'
      ),
      homepage=self.HOMEPAGE,
      citation=self.CITATION,
      license=self.LICENSE,
      features=self._features(),
      metadata=tfds.core.MetadataDict(),
    )

  def _features(self) -> tfds.features.FeaturesDict:
    """The example features; a subclass may add its own (`extra=`)."""
    return crop_features(self.builder_config.encoding, self.LABELLED)

  @abc.abstractmethod
  def _prepare_source(self, manual_dir: Path) -> CropSource:
    """Reads the annotations in `manual_dir` and describes the photos."""

  def _download_and_prepare(self, dl_manager, download_config=None):
    manual_dir = Path(os.fspath(dl_manager.manual_dir))
    source = self._prepare_source(manual_dir)
    if source.label_names is not None:
      self.info.features['label'].names = list(source.label_names)
    for name, names in source.extra_label_names.items():
      self.info.features[name].names = list(names)
    options = self.builder_config.crop_options()
    label_ids = (
      {name: i for i, name in enumerate(source.label_names)}
      if source.label_names is not None
      else None
    )
    writers = {
      split: ShardedArrayRecordWriter(
        self._get_filename_template(split), self.info.file_format
      )
      for split in source.splits
    }
    counts = {
      split: collections.Counter(dict.fromkeys(COUNT_KEYS, 0))
      for split in source.splits
    }
    logged = collections.Counter()
    log.info('%s: reading %s (%s)', self.name, source.description, manual_dir)
    results = ordered_parallel_map(
      _crop_in_worker,
      source.tasks(),
      workers=self.num_workers,
      initializer=_init_worker,
      initargs=(options, label_ids),
    )
    for result in tqdm.tqdm(
      results,
      total=source.num_photos,
      unit=' photos',
      desc=f'{self.name}/{self.builder_config.name}',
    ):
      writer = writers[result.split]
      for record in result.records:
        writer.write(record)
      counts[result.split].update(result.counts)
      for kind, message in result.events:
        logged[result.split, kind] += 1
        few = logged[result.split, kind] <= MAX_LOGGED_BOX_EVENTS
        if few or kind.endswith('photos'):
          log.warning('%s', message)
    for split, extra in source.extra_counts.items():
      counts[split].update(extra)

    split_infos = []
    for split, writer in writers.items():
      info = writer.close()
      if info is None:
        log.warning(
          '%s: split %r has no crops; it is left out', self.name, split
        )
      else:
        split_infos.append(info)
    if not split_infos:
      raise ValueError(f'{self.name}: no crops were produced from {manual_dir}')
    self.info.set_splits(tfds.core.SplitDict(split_infos))
    self.build_counts = {split: dict(c) for split, c in counts.items()}
    self.info.metadata['counts'] = self.build_counts
    self.info.metadata['source'] = source.description
    self.info.metadata['options'] = {
      name: getattr(self.builder_config, name)
      for name in self.builder_config.option_names()
    }
    for split, split_counts in self.build_counts.items():
      log.info('%s %s: %s', self.name, split, split_counts)


@dataclasses.dataclass
class CropSource:
  """What a builder found in `manual_dir`.

  Attributes:
    description: what was read (for logs and metadata).
    splits: split names, in output order.
    tasks: callable returning the `PhotoTask` iterator (streams the photos).
    num_photos: number of tasks, for the progress bar (None if unknown).
    label_names: class names for labelled datasets, in ClassLabel id order
      (sorted, unless the source has its own ids).
    extra_counts: counts found while reading annotations, per split.
    extra_label_names: names of the builder's extra ClassLabel features
      (`crop_features(extra=...)`), in id order, per feature.
  """

  description: str
  splits: Sequence[str]
  tasks: Callable[[], Iterator[PhotoTask]]
  num_photos: int | None = None
  label_names: Sequence[str] | None = None
  extra_counts: dict[str, dict[str, int]] = dataclasses.field(
    default_factory=dict
  )
  extra_label_names: dict[str, Sequence[str]] = dataclasses.field(
    default_factory=dict
  )


def find_photo(directory: Path, stem: str) -> Path | None:
  """The photo `<stem>.<ext>` in `directory` for a common image extension."""
  for ext in IMAGE_EXTENSIONS:
    path = directory / f'{stem}{ext}'
    if path.is_file():
      return path
  return None
