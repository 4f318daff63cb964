"""TF-free host input pipeline: TFDS array_record crops -> grain -> uint8 batches.

Host work is only read, decode, resize and batch; all augmentation happens on
device. Pre-training batches keep each crop's aspect ratio: the crop sits in
the top-left of a fixed-size canvas and its valid size travels with it, so
batches stay fixed-shape for jit while the on-device crops see the real crop
(`fit_canvas`). Evaluation batches are the thesis's shorter-side resize and
center crop (`decode_and_resize`). Images are read as their stored encoded bytes
(`tfds.decode.SkipDecoding`) and decoded here with PIL, because JPEG `draft`
mode lets libjpeg decode straight to a reduced size (much faster when the
stored crop is larger than the target size).

Typical use::

  source = open_source('sku110k_crops', split='train', data_dir=data_dir,
                       config='256')
  loader = make_loader(source, batch_size=64, image_size=256, seed=0)
  for batch in loader:   # image uint8 [B,S,S,3], size int32 [B,2]
    arrays = mesh.shard_batch(batch, data_mesh)  # sspr_jax.core.mesh

`loader.iter_from(n)` yields the batches from batch n on, the same whatever
`worker_count`: a resumed run passes its step.
"""

from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import grain
import numpy as np
from PIL import Image

IMAGE_KEY = 'image'
# 'canvas': aspect kept, valid size carried (pre-training, `fit_canvas`);
# 'shorter_center_crop': the evaluation square (`decode_and_resize`).
ResizeMode = Literal['canvas', 'shorter_center_crop']
RESIZE_MODES = ('canvas', 'shorter_center_crop')
SIZE_KEY = 'size'
# PIL first reduces by an integer factor (fast box filter) while the image is
# more than `reducing_gap` times larger than the target, then resamples.
_REDUCING_GAP = 2.0


# --------------------------------------------------------------------------
# Opening built TFDS datasets without builder code or TensorFlow.
# --------------------------------------------------------------------------


def _version_dirs(directory: pathlib.Path) -> list[pathlib.Path]:
  """Subdirectories named like a TFDS version that hold a dataset_info.json."""
  found = []
  for child in directory.iterdir():
    parts = child.name.split('.')
    if (
      child.is_dir()
      and len(parts) == 3
      and all(p.isdigit() for p in parts)
      and (child / 'dataset_info.json').is_file()
    ):
      found.append(child)
  return sorted(found, key=lambda p: tuple(int(x) for x in p.name.split('.')))


def _built_configs(dataset_dir: pathlib.Path) -> list[str]:
  """Config subdirectories holding at least one built version."""
  return sorted(
    p.name
    for p in dataset_dir.iterdir()
    if p.is_dir() and not p.name.startswith('.') and _version_dirs(p)
  )


def find_dataset_dir(
  name: str, *, data_dir: str | os.PathLike, config: str | None = None
) -> pathlib.Path:
  """Returns `data_dir/name[/config]/<latest version>` of a built dataset.

  Raises:
    FileNotFoundError: naming the path searched and, where it helps, the
      configs or versions that do exist.
  """
  dataset_dir = pathlib.Path(data_dir).expanduser() / name
  if not dataset_dir.is_dir():
    raise FileNotFoundError(
      f'No built dataset {name!r}: directory {dataset_dir} does not exist. '
      f'Build it first (data_builders) or pass the right data_dir.'
    )
  search_dir = dataset_dir / config if config else dataset_dir
  if not search_dir.is_dir():
    raise FileNotFoundError(
      f'No config {config!r} of dataset {name!r}: directory {search_dir} '
      f'does not exist (built: {_built_configs(dataset_dir) or "none"}).'
    )
  versions = _version_dirs(search_dir)
  if versions:
    return versions[-1]
  configs = _built_configs(search_dir)
  if configs and not config:
    raise FileNotFoundError(
      f'Dataset {name!r} at {search_dir} has configs {configs}; pass '
      f'config=one of them.'
    )
  raise FileNotFoundError(
    f'No built version of {name!r} in {search_dir} (expected a '
    f'subdirectory like 1.0.0/ holding dataset_info.json; an interrupted '
    f'build leaves only incomplete.* directories).'
  )


def open_source(
  name: str,
  *,
  split: str,
  data_dir: str | os.PathLike,
  config: str | None = None,
  decode_images: bool = False,
) -> Sequence[dict[str, Any]]:
  """Opens a built array_record split as a random-access sequence of dicts.

  Needs neither the builder code nor TensorFlow. `split` accepts TFDS slices
  ('train[:10%]', 'val[5:20]'). Images come back as encoded bytes unless
  `decode_images` (then uint8 HWC arrays, decoded by TFDS with PIL/OpenCV);
  the loader decodes bytes itself, faster. Text features come back as bytes.
  """
  import tensorflow_datasets as tfds  # Heavy import; only needed here.

  version_dir = find_dataset_dir(name, data_dir=data_dir, config=config)
  builder = tfds.builder_from_directory(str(version_dir))
  available = sorted(builder.info.splits.keys())
  base_split = split.split('[')[0]
  if base_split not in available:
    raise ValueError(
      f'Split {split!r} not in dataset at {version_dir}; available splits: '
      f'{available}.'
    )
  decoders = None if decode_images else {IMAGE_KEY: tfds.decode.SkipDecoding()}
  return builder.as_data_source(split, decoders=decoders)


# --------------------------------------------------------------------------
# Decoding and resizing one example.
# --------------------------------------------------------------------------


def _as_pil(image: Any) -> Image.Image:
  if isinstance(image, (bytes, bytearray, memoryview)):
    return Image.open(io.BytesIO(image))
  if isinstance(image, np.ndarray):
    if image.ndim == 3 and image.shape[-1] == 1:
      image = image[..., 0]
    return Image.fromarray(np.asarray(image, np.uint8))
  if isinstance(image, Image.Image):
    return image
  raise TypeError(
    f'Unsupported image type {type(image).__name__}; expected '
    'encoded bytes, a uint8 numpy array or a PIL image.'
  )


def _decode(img: Image.Image, need: tuple[int, int]) -> Image.Image:
  """RGB pixels of an opened image; a JPEG at a reduced scale >= `need`."""
  # libjpeg decodes at 1/2, 1/4 or 1/8 scale while staying at least `need`
  # (width, height): most of the decode cost vanishes for large crops.
  img.draft('RGB', need)
  return img if img.mode == 'RGB' else img.convert('RGB')


def decode_and_resize(
  image: Any, image_size: int, resize: ResizeMode = 'shorter_center_crop'
) -> np.ndarray:
  """Decodes one image to uint8 [image_size, image_size, 3] (evaluation).

  'shorter_center_crop' scales the shorter side to `image_size` and keeps the
  central square: the thesis's evaluation transform. Bilinear resampling.
  """
  if resize != 'shorter_center_crop':
    raise ValueError(
      f'resize must be one of {RESIZE_MODES} (canvas: `fit_canvas`), got '
      f'{resize!r}.'
    )
  img = _as_pil(image)
  width, height = img.size
  scale = image_size / min(width, height)
  img = _decode(
    img,
    (
      max(image_size, round(width * scale)),
      max(image_size, round(height * scale)),
    ),
  )
  width, height = img.size
  side = min(width, height)
  left, top = (width - side) / 2, (height - side) / 2
  out = img.resize(
    (image_size, image_size),
    Image.Resampling.BILINEAR,
    box=(left, top, left + side, top + side),
    reducing_gap=_REDUCING_GAP,
  )
  return np.asarray(out, dtype=np.uint8)


def fit_canvas(
  image: Any, canvas_size: int, shorter_side: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Decodes one image into the top-left of a uint8 canvas, aspect kept.

  Without `shorter_side` the crop keeps its stored resolution unless it
  does not fit, then it shrinks until its longer side is `canvas_size`: the
  on-device RandomResizedCrop then sees the crop as torchvision would see
  the native crop (the thesis). With `shorter_side` the shorter side is
  scaled to it first (up or down, torchvision `Resize(shorter_side)`, as
  Jigsaw's 256) and a longer side past the canvas is cut to its central
  `canvas_size` pixels.

  Returns:
    (canvas uint8 [canvas_size, canvas_size, 3], size int32 [2]): the image
    is canvas[:size[0], :size[1]]; the rest repeats its last row and column.
  """
  if shorter_side is not None and shorter_side > canvas_size:
    raise ValueError(
      f'shorter_side {shorter_side} does not fit in a {canvas_size} px canvas.'
    )
  img = _as_pil(image)
  width, height = img.size
  if shorter_side:
    scale = shorter_side / min(width, height)
  else:
    scale = min(1.0, canvas_size / max(width, height))
  out_w = max(1, round(width * scale))
  out_h = max(1, round(height * scale))
  img = _decode(img, (out_w, out_h))
  keep_w, keep_h = min(out_w, canvas_size), min(out_h, canvas_size)
  if img.size == (keep_w, keep_h):  # Stored size fits: no resampling.
    pixels = np.asarray(img, dtype=np.uint8)
  else:
    # The central keep_w x keep_h of the output, in decoded pixels (a JPEG
    # draft may have decoded at a reduced size).
    fx, fy = img.size[0] / out_w, img.size[1] / out_h
    left, top = (out_w - keep_w) / 2 * fx, (out_h - keep_h) / 2 * fy
    box = (left, top, left + keep_w * fx, top + keep_h * fy)
    pixels = np.asarray(
      img.resize(
        (keep_w, keep_h),
        Image.Resampling.BILINEAR,
        box=box,
        reducing_gap=_REDUCING_GAP,
      ),
      dtype=np.uint8,
    )
  # Edge padding: the on-device resize's filter reaches a pixel or two past
  # a crop's border, where it must see the border (torchvision crops, then
  # resizes with edges clamped), not black.
  canvas = np.pad(
    pixels,
    ((0, canvas_size - keep_h), (0, canvas_size - keep_w), (0, 0)),
    mode='edge',
  )
  return canvas, np.array([keep_h, keep_w], np.int32)


def _to_numpy_feature(key: str, value: Any) -> np.ndarray:
  """Integers -> int32, text -> numpy bytes, arrays kept (ints as int32)."""
  if isinstance(value, str):
    value = value.encode('utf-8')
  if isinstance(value, (bytes, np.bytes_)):
    return np.bytes_(value)
  array = np.asarray(value)
  if array.dtype.kind in 'iub' and array.dtype != np.int32:
    if array.size and (
      array.max() > np.iinfo(np.int32).max
      or array.min() < np.iinfo(np.int32).min
    ):
      raise ValueError(f'Feature {key!r} does not fit in int32: {value!r}.')
    array = array.astype(np.int32)
  return array


class _Preprocess(grain.transforms.Map):
  """Example dict -> {'image': uint8 [S,S,3], ['size'], *keys}; picklable."""

  def __init__(
    self,
    image_size: int,
    resize: ResizeMode,
    keys: tuple[str, ...],
    shorter_side: int | None = None,
  ):
    self._image_size = image_size
    self._resize = resize
    self._keys = keys
    self._shorter_side = shorter_side

  def map(self, example: Mapping[str, Any]) -> dict[str, np.ndarray]:
    missing = [k for k in (IMAGE_KEY, *self._keys) if k not in example]
    if missing:
      raise KeyError(
        f'Example lacks features {missing}; it has {sorted(example)}.'
      )
    if self._resize == 'canvas':
      image, size = fit_canvas(
        example[IMAGE_KEY], self._image_size, self._shorter_side
      )
      out = {IMAGE_KEY: image, SIZE_KEY: size}
    else:
      out = {
        IMAGE_KEY: decode_and_resize(
          example[IMAGE_KEY], self._image_size, self._resize
        )
      }
    for key in self._keys:
      out[key] = _to_numpy_feature(key, example[key])
    return out


def _stack_batch(
  examples: Sequence[dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
  # Text stacks to a fixed-width numpy bytes array ('S<n>'), which crosses
  # process boundaries cheaply, unlike object arrays.
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


# --------------------------------------------------------------------------
# The loader.
# --------------------------------------------------------------------------


def ensure_absl_flags_parsed() -> None:
  """Lets grain worker processes start outside `absl.app.run`.

  grain reads its own absl flags when it starts workers; unparsed flags raise
  `UnparsedFlagAccessError`. Under `absl.app.run` the flags are already parsed
  and this does nothing; from plain python or pytest it marks them parsed
  with their defaults (it does not read sys.argv, which belongs to the host
  program).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _shuffle_seed(seed: int) -> int:
  # grain reshuffles epoch e with seed+e, so nearby user seeds would share
  # epoch orders (seed 0 epoch 1 == seed 1 epoch 0); hash the seed first.
  return int(np.random.SeedSequence(seed).generate_state(1)[0])


def make_loader(
  source: Sequence[Mapping[str, Any]],
  *,
  batch_size: int,
  image_size: int,
  seed: int,
  shuffle: bool = True,
  num_epochs: int | None = None,
  worker_count: int = 0,
  shard_index: int | None = None,
  shard_count: int | None = None,
  drop_remainder: bool = True,
  resize: ResizeMode = 'canvas',
  shorter_side: int | None = None,
  keys: Sequence[str] = (),
  read_threads: int | None = None,
  prefetch_batches: int = 2,
) -> Loader:
  """Returns an iterable of per-process batches (dicts of numpy arrays).

  Each batch holds 'image' uint8 [batch_size, image_size, image_size, 3],
  with resize='canvas' also 'size' int32 [batch_size, 2] (the valid height
  and width of each canvas), and the features named in `keys` (integers as
  int32, text as numpy bytes).

  Args:
    source: random-access sequence of example dicts (`open_source`, or any
      object with `__len__`/`__getitem__`); 'image' is encoded bytes, a uint8
      array or a PIL image.
    batch_size: examples per batch in this process.
    image_size: output side length in pixels (the canvas side).
    seed: shuffle seed; the same seed gives the same batches, independent of
      `worker_count` and `read_threads`. Each epoch is reshuffled.
    shuffle: shuffle the shard each epoch.
    num_epochs: passes over the shard; None repeats forever.
    worker_count: grain worker processes doing decode/resize (0: in-process
      threads only). Workers are spawned, so a script using them needs an
      `if __name__ == '__main__':` guard.
    shard_index, shard_count: this process's shard (default: the JAX process
      index and count). Shards are disjoint; with `drop_remainder=False` they
      cover the source exactly once per epoch, with True every shard has
      len(source) // shard_count examples so all processes step equally.
    drop_remainder: drop the last incomplete batch (of the whole run, since
      batches run on across epoch boundaries) and trim shards to equal size.
    resize: 'canvas' (aspect kept, `fit_canvas`) or 'shorter_center_crop'
      (`decode_and_resize`).
    shorter_side: with 'canvas', scale the shorter side to this first.
    keys: extra features to carry, e.g. ('label', 'origin').
    read_threads: threads decoding in each process (default 2 without
      workers, 1 per worker).
    prefetch_batches: batches buffered ahead per process/worker.
  """
  if batch_size <= 0 or image_size <= 0:
    raise ValueError(
      f'batch_size and image_size must be positive, got '
      f'{batch_size} and {image_size}.'
    )
  if resize not in RESIZE_MODES:
    raise ValueError(f'resize must be one of {RESIZE_MODES}, got {resize!r}.')
  if worker_count < 0:
    raise ValueError(f'worker_count must be >= 0, got {worker_count}.')
  if shorter_side is not None and (
    resize != 'canvas' or not 0 < shorter_side <= image_size
  ):
    raise ValueError(
      f'shorter_side={shorter_side} needs resize=canvas and must be in '
      f'[1, image_size={image_size}].'
    )
  keys = tuple(k for k in keys if k not in (IMAGE_KEY, SIZE_KEY))
  if shard_index is None or shard_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(
      f'Need 0 <= shard_index < shard_count, got '
      f'{shard_index} and {shard_count}.'
    )

  num_examples = len(source)
  per_shard = num_examples // shard_count
  if drop_remainder:
    stop = per_shard * shard_count
    if per_shard < batch_size:
      raise ValueError(
        f'Shard {shard_index}/{shard_count} has {per_shard} examples, fewer '
        f'than batch_size={batch_size}: every batch would be dropped.'
      )
  else:
    stop = num_examples
  dataset = grain.MapDataset.source(source)[shard_index:stop:shard_count]
  if shuffle:
    dataset = dataset.shuffle(seed=_shuffle_seed(seed))
  if num_epochs != 1:  # repeat(None) repeats forever.
    dataset = dataset.repeat(num_epochs)
  dataset = dataset.map(_Preprocess(image_size, resize, keys, shorter_side))
  dataset = dataset.batch(
    batch_size, drop_remainder=drop_remainder, batch_fn=_stack_batch
  )
  if read_threads is None:
    read_threads = 1 if worker_count else 2
  # (shape, dtype) of one example's arrays that the train step receives.
  item_spec = {IMAGE_KEY: ((image_size, image_size, 3), np.uint8)}
  if resize == 'canvas':
    item_spec[SIZE_KEY] = ((2,), np.int32)
  return Loader(
    dataset,
    item_spec=item_spec,
    worker_count=worker_count,
    read_threads=read_threads,
    prefetch_batches=prefetch_batches,
    examples_per_epoch=len(range(shard_index, stop, shard_count)),
  )


def pretraining_loader(
  source, input_config, *, batch_size: int, seed: int
) -> Loader:
  """The loader of a config's `input` section: crops kept in canvases.

  `batch_size` is this process's share of the global batch.
  """
  return make_loader(
    source,
    batch_size=batch_size,
    image_size=input_config.canvas_size,
    shorter_side=input_config.get('shorter_side', 0) or None,
    seed=seed,
    resize='canvas',
    worker_count=input_config.get('worker_count', 0),
  )


class Loader(grain.IterDataset):
  """Iterable of batches that resumes at any batch: `iter_from(n)`.

  A run's position is the number of batches it consumed (its step), whatever
  the number of worker processes (grain's own iterator state depends on it).
  Resuming is exact and cheap: the batch sequence is a random-access
  `grain.MapDataset`, sliced from batch n.
  """

  def __init__(
    self,
    batches: grain.MapDataset,
    *,
    item_spec: dict,
    worker_count: int,
    read_threads: int,
    prefetch_batches: int,
    examples_per_epoch: int,
  ):
    super().__init__()
    self._batches = batches
    self._worker_count = worker_count
    self._read_threads = read_threads
    self._prefetch_batches = prefetch_batches
    self.examples_per_epoch = examples_per_epoch  # In this shard.
    self._item_spec = item_spec

  def batch_spec(self, global_batch: int) -> dict:
    """`jax.ShapeDtypeStruct`s of the image fields of a global batch."""
    import jax  # pylint: disable=g-import-not-at-top  # Not in workers.

    return {
      k: jax.ShapeDtypeStruct((global_batch,) + shape, dtype)
      for k, (shape, dtype) in self._item_spec.items()
    }

  def iter_from(self, next_batch: int) -> grain.DatasetIterator:
    """A plain grain iterator starting at batch `next_batch`."""
    batches = self._batches[next_batch:] if next_batch else self._batches
    # Prefetch counts batches here; grain's default (500) would hold GBs.
    dataset = batches.to_iter_dataset(
      grain.ReadOptions(
        num_threads=self._read_threads,
        prefetch_buffer_size=max(self._prefetch_batches, self._read_threads),
      )
    )
    if self._worker_count:
      ensure_absl_flags_parsed()
      dataset = dataset.mp_prefetch(
        grain.MultiprocessingOptions(
          num_workers=self._worker_count,
          per_worker_buffer_size=self._prefetch_batches,
        )
      )
    return iter(dataset)

  def __iter__(self) -> grain.DatasetIterator:
    return self.iter_from(0)

  def __str__(self) -> str:
    return (
      f'Loader(workers={self._worker_count}, '
      f'threads={self._read_threads}, batches={self._batches})'
    )
