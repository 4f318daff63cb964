"""Tests for the TF-free input pipeline (sspr_jax.data.pipeline)."""

import io
import os
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from sspr_jax.data import pipeline

TINY_NAME = 'tiny_crops'


class TinyCrops(tfds.core.GeneratorBasedBuilder):
  """Crops with the rack_crops feature contract, for reading tests."""

  VERSION = tfds.core.Version('1.0.0')
  # tfds locates a packaged builder's code via `importlib_resources`, which is
  # not installed here; this builder has no checksums file to find anyway.
  code_path = None
  SPLIT_SIZES = {'train': 20, 'test': 6}

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(
            shape=(None, None, 3), encoding_format='jpeg'
          ),
          'origin': tfds.features.Text(),
          'box': tfds.features.Tensor(shape=(4,), dtype=np.int32),
          'crop_index': tfds.features.Scalar(dtype=np.int32),
          'crop_id': tfds.features.Text(),
          'label': tfds.features.ClassLabel(num_classes=3),
          'label_name': tfds.features.Text(),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    return {
      split: self._generate_examples(split, n)
      for split, n in self.SPLIT_SIZES.items()
    }

  def _generate_examples(self, split, num_examples):
    rng = np.random.default_rng(len(split))
    for i in range(num_examples):
      height, width = 30 + 3 * i, 20 + 5 * i
      pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
      yield (
        f'{split}{i}',
        {
          'image': _encode(pixels, 'JPEG'),
          'origin': f'{split}_photo{i // 4}',
          'box': np.array([i, i, i + width, i + height], np.int32),
          'crop_index': i % 4,
          'crop_id': f'{split}_photo{i // 4}_{i % 4}',
          'label': i % 3,
          'label_name': f'class{i % 3}',
        },
      )


def build_tiny_crops(data_dir) -> pathlib.Path:
  """Builds TinyCrops as array_record under data_dir; returns its version dir."""
  builder = TinyCrops(data_dir=os.fspath(data_dir), file_format='array_record')
  builder.download_and_prepare()
  return pathlib.Path(builder.data_dir)


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format=fmt)
  return buffer.getvalue()


def _memory_source(num_examples: int, seed: int = 0) -> list[dict]:
  """In-memory examples with variable-size PNG images and unique ids."""
  rng = np.random.default_rng(seed)
  examples = []
  for i in range(num_examples):
    height, width = rng.integers(8, 40, size=2)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    examples.append(
      {
        'image': _encode(pixels, 'PNG'),
        'label': i % 5,
        'crop_id': f'c{i}'.encode(),
        'origin': b'photo',
      }
    )
  return examples


def _ids(batches) -> list[str]:
  return [x.decode() for b in batches for x in b['crop_id'].tolist()]


def _take(loader, num_batches: int) -> list[dict]:
  iterator = iter(loader)
  return [next(iterator) for _ in range(num_batches)]


@pytest.fixture(scope='module')
def tiny_data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  build_tiny_crops(data_dir)
  return data_dir


# ---------------------------------------------------------------- sources


def test_open_source_reads_built_split_as_bytes(tiny_data_dir):
  source = pipeline.open_source(
    TINY_NAME, split='train', data_dir=tiny_data_dir
  )
  assert len(source) == TinyCrops.SPLIT_SIZES['train']
  example = source[0]
  assert isinstance(example['image'], bytes)  # SkipDecoding: raw JPEG.
  assert example['image'][:2] == b'\xff\xd8'
  assert isinstance(example['origin'], bytes)
  assert np.asarray(example['box']).shape == (4,)
  decoded = pipeline.open_source(
    TINY_NAME, split='train', data_dir=tiny_data_dir, decode_images=True
  )
  assert decoded[0]['image'].dtype == np.uint8
  assert decoded[0]['image'].ndim == 3


def test_open_source_split_slices(tiny_data_dir):
  half = pipeline.open_source(
    TINY_NAME, split='train[:50%]', data_dir=tiny_data_dir
  )
  rest = pipeline.open_source(
    TINY_NAME, split='train[50%:]', data_dir=tiny_data_dir
  )
  assert len(half) == len(rest) == 10
  ids = {half[i]['crop_id'] for i in range(10)}
  ids |= {rest[i]['crop_id'] for i in range(10)}
  assert len(ids) == 20


def test_open_source_picks_latest_version(tiny_data_dir, tmp_path):
  old = tmp_path / TINY_NAME / '0.9.0'
  newest = tmp_path / TINY_NAME / '1.10.0'
  for directory in (old, newest):
    directory.mkdir(parents=True)
    (directory / 'dataset_info.json').write_text('{}')
  (tmp_path / TINY_NAME / '2.0.0').mkdir()  # No dataset_info.json: ignored.
  assert pipeline.find_dataset_dir(TINY_NAME, data_dir=tmp_path) == newest


def test_missing_dataset_errors_name_the_path(tiny_data_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'nope')):
    pipeline.open_source('nope', split='train', data_dir=tmp_path)
  with pytest.raises(FileNotFoundError, match=r"config 'big'.*built: none"):
    pipeline.open_source(
      TINY_NAME, split='train', data_dir=tiny_data_dir, config='big'
    )
  (tmp_path / 'half_built' / 'incomplete.ABC_1.0.0').mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match='No built version'):
    pipeline.find_dataset_dir('half_built', data_dir=tmp_path)
  with pytest.raises(
    ValueError, match=r"Split 'validation'.*\['test', 'train'\]"
  ):
    pipeline.open_source(TINY_NAME, split='validation', data_dir=tiny_data_dir)


def test_configs_need_a_config_name(tmp_path):
  version_dir = tmp_path / 'ds' / 'small' / '1.0.0'
  version_dir.mkdir(parents=True)
  (version_dir / 'dataset_info.json').write_text('{}')
  (tmp_path / 'ds' / '.config').mkdir()  # tfds metadata, not a config.
  with pytest.raises(FileNotFoundError, match=r"configs \['small'\]"):
    pipeline.find_dataset_dir('ds', data_dir=tmp_path)
  with pytest.raises(FileNotFoundError, match=r"config 'big'.*\['small'\]"):
    pipeline.find_dataset_dir('ds', data_dir=tmp_path, config='big')
  assert (
    pipeline.find_dataset_dir('ds', data_dir=tmp_path, config='small')
    == version_dir
  )


def test_end_to_end_synthetic_sku110k_crops(tmp_path):
  """Synthetic shelves -> sku110k_crops builder -> pipeline, one full epoch."""
  from data_builders.build import build  # pylint: disable=g-import-not-at-top
  from data_builders.synthetic import generate_shelves  # pylint: disable=g-import-not-at-top

  shelves = generate_shelves(
    tmp_path / 'shelves',
    seed=0,
    photos_per_split={'train': 2, 'val': 1, 'test': 1},
    photo_size=(320, 240),
    boxes_per_photo=(50, 60),
    num_workers=0,
  )
  build(
    'sku110k_crops',
    config='128',
    manual_dir=shelves,
    data_dir=tmp_path / 'tfds',
    num_workers=0,
  )
  with pytest.raises(FileNotFoundError, match=r"config 'native'.*\['128'\]"):
    pipeline.open_source(
      'sku110k_crops',
      split='train',
      data_dir=tmp_path / 'tfds',
      config='native',
    )
  source = pipeline.open_source(
    'sku110k_crops', split='train', data_dir=tmp_path / 'tfds', config='128'
  )
  assert len(source) >= 100  # 2 photos x 50-60 boxes.
  batches = list(
    pipeline.make_loader(
      source,
      batch_size=16,
      image_size=32,
      seed=0,
      num_epochs=1,
      drop_remainder=False,
      resize='shorter_center_crop',
      keys=('crop_id', 'origin', 'box'),
      shard_index=0,
      shard_count=1,
    )
  )
  ids = _ids(batches)
  assert len(ids) == len(set(ids)) == len(source)
  assert all(b['image'].shape[1:] == (32, 32, 3) for b in batches)
  assert all(o.startswith(b'train_') for b in batches for o in b['origin'])
  # Product crops are not flat: the decode really produced pixels.
  assert np.concatenate([b['image'] for b in batches]).std() > 10


# ---------------------------------------------------------- decode/resize


def _three_band_image() -> np.ndarray:
  """60 wide x 20 high: blue | red (central 20x20) | blue."""
  pixels = np.zeros((20, 60, 3), np.uint8)
  pixels[:, :, 2] = 255
  pixels[:, 20:40] = (255, 0, 0)
  return pixels


@pytest.mark.parametrize('fmt', ['PNG', 'JPEG', 'array'])
def test_shorter_center_crop_keeps_the_center(fmt):
  pixels = _three_band_image()
  image = pixels if fmt == 'array' else _encode(pixels, fmt)
  out = pipeline.decode_and_resize(image, 8, 'shorter_center_crop')
  assert out.shape == (8, 8, 3) and out.dtype == np.uint8
  # Only the red center survives (inner pixels: away from bilinear edges).
  np.testing.assert_allclose(out[1:-1, 1:-1].mean((0, 1)), (255, 0, 0), atol=12)


def test_canvas_keeps_the_whole_crop_and_its_aspect_ratio():
  # 60 x 20 fits a 64 canvas: stored pixels, top-left, valid size (20, 60).
  canvas, size = pipeline.fit_canvas(_encode(_three_band_image(), 'PNG'), 64)
  assert canvas.shape == (64, 64, 3) and canvas.dtype == np.uint8
  np.testing.assert_array_equal(size, [20, 60])
  np.testing.assert_array_equal(canvas[:20, :60], _three_band_image())
  # The padding repeats the edge (the last row, then the last column).
  np.testing.assert_array_equal(
    canvas[20:, :60], canvas[19:20, :60].repeat(44, 0)
  )
  np.testing.assert_array_equal(canvas[:, 60:], canvas[:, 59:60].repeat(4, 1))
  # Too large: shrunk until the longer side fits (aspect kept).
  canvas, size = pipeline.fit_canvas(_three_band_image(), 30)
  np.testing.assert_array_equal(size, [10, 30])
  np.testing.assert_array_equal(canvas[5, 0], [0, 0, 255])
  np.testing.assert_array_equal(canvas[5, 15], [255, 0, 0])
  np.testing.assert_array_equal(canvas[5, 29], [0, 0, 255])
  np.testing.assert_array_equal(canvas[10:], canvas[9:10].repeat(20, 0))


def test_canvas_with_shorter_side_scales_up_and_cuts_the_center():
  # Jigsaw's Resize(256) analogue: shorter side 20 -> 40, longer 120 -> 64.
  canvas, size = pipeline.fit_canvas(_three_band_image(), 64, shorter_side=40)
  np.testing.assert_array_equal(size, [40, 64])
  reference = np.asarray(
    Image.fromarray(_three_band_image()).resize(
      (120, 40), Image.Resampling.BILINEAR
    )
  )[:, 28:92]
  assert np.abs(canvas[:40].astype(int) - reference).max() <= 2
  with pytest.raises(ValueError, match='does not fit'):
    pipeline.fit_canvas(_three_band_image(), 32, shorter_side=40)


def test_grayscale_becomes_rgb():
  gray = np.arange(400, dtype=np.uint8).reshape(20, 20)
  out = pipeline.decode_and_resize(_encode(gray, 'PNG'), 10)
  assert out.shape == (10, 10, 3)
  np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_bad_resize_mode_and_image_type():
  with pytest.raises(ValueError, match='resize must be one of'):
    pipeline.decode_and_resize(np.zeros((4, 4, 3), np.uint8), 4, 'stretch')
  with pytest.raises(TypeError, match='Unsupported image type'):
    pipeline.decode_and_resize('a.jpg', 4)


# ----------------------------------------------------------------- loader


@pytest.mark.parametrize('resize', ['canvas', 'shorter_center_crop'])
def test_loader_shapes_and_dtypes_from_tfds(tiny_data_dir, resize):
  source = pipeline.open_source(
    TINY_NAME, split='train', data_dir=tiny_data_dir
  )
  batch = _take(
    pipeline.make_loader(
      source,
      batch_size=4,
      image_size=24,
      seed=0,
      resize=resize,
      keys=('label', 'origin', 'box', 'crop_index'),
      shard_index=0,
      shard_count=1,
    ),
    1,
  )[0]
  assert batch['image'].shape == (4, 24, 24, 3)
  assert batch['image'].dtype == np.uint8
  assert batch['label'].dtype == np.int32 and batch['label'].shape == (4,)
  assert batch['box'].dtype == np.int32 and batch['box'].shape == (4, 4)
  assert batch['crop_index'].dtype == np.int32
  assert batch['origin'].dtype.kind == 'S'
  assert all(o.startswith(b'train_photo') for o in batch['origin'])
  keys = {'image', 'label', 'origin', 'box', 'crop_index'}
  if resize == 'canvas':
    keys.add('size')
    assert batch['size'].dtype == np.int32 and batch['size'].shape == (4, 2)
    # Crops are stored at native size: the canvas holds them unscaled.
    for size, box in zip(batch['size'], batch['box']):
      w, h = box[2] - box[0], box[3] - box[1]
      scale = min(1.0, 24 / max(w, h))
      np.testing.assert_allclose(size, [h * scale, w * scale], atol=1)
  assert set(batch) == keys


def test_loader_missing_key_names_available_features():
  loader = pipeline.make_loader(
    _memory_source(4),
    batch_size=2,
    image_size=8,
    seed=0,
    keys=('bbox',),
    shard_index=0,
    shard_count=1,
  )
  with pytest.raises(KeyError, match=r"\['bbox'\].*crop_id"):
    next(iter(loader))


def test_same_seed_same_batches_other_seed_differs():
  source = _memory_source(24)

  def ids(seed):
    return _ids(
      _take(
        pipeline.make_loader(
          source,
          batch_size=6,
          image_size=8,
          seed=seed,
          keys=('crop_id',),
          shard_index=0,
          shard_count=1,
        ),
        4,
      )
    )

  first = _take(
    pipeline.make_loader(
      source, batch_size=6, image_size=8, seed=3, shard_index=0, shard_count=1
    ),
    2,
  )
  again = _take(
    pipeline.make_loader(
      source, batch_size=6, image_size=8, seed=3, shard_index=0, shard_count=1
    ),
    2,
  )
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['image'], b['image'])
  assert ids(3) == ids(3)
  assert ids(3) != ids(4)
  assert sorted(ids(3)) == sorted(f'c{i}' for i in range(24))


def test_each_epoch_is_reshuffled():
  source = _memory_source(16)
  batches = list(
    pipeline.make_loader(
      source,
      batch_size=4,
      image_size=8,
      seed=0,
      num_epochs=3,
      keys=('crop_id',),
      shard_index=0,
      shard_count=1,
    )
  )
  assert len(batches) == 12
  order = _ids(batches)
  epochs = [order[i * 16 : (i + 1) * 16] for i in range(3)]
  for epoch in epochs:
    assert sorted(epoch) == sorted(f'c{i}' for i in range(16))
  assert epochs[0] != epochs[1] and epochs[1] != epochs[2]


def test_no_shuffle_keeps_source_order():
  batches = list(
    pipeline.make_loader(
      _memory_source(6),
      batch_size=3,
      image_size=8,
      seed=0,
      shuffle=False,
      num_epochs=1,
      keys=('crop_id',),
      shard_index=0,
      shard_count=1,
    )
  )
  assert _ids(batches) == [f'c{i}' for i in range(6)]


@pytest.mark.parametrize('shard_count', [2, 3])
def test_shards_are_disjoint_and_cover_once(shard_count):
  num_examples = 29  # Not divisible by 2 or 3, nor by the batch size.
  source = _memory_source(num_examples)
  per_shard = []
  for shard_index in range(shard_count):
    batches = list(
      pipeline.make_loader(
        source,
        batch_size=4,
        image_size=8,
        seed=1,
        num_epochs=1,
        drop_remainder=False,
        keys=('crop_id',),
        shard_index=shard_index,
        shard_count=shard_count,
      )
    )
    per_shard.append(_ids(batches))
  all_ids = [i for ids in per_shard for i in ids]
  assert sorted(all_ids) == sorted(f'c{i}' for i in range(num_examples))
  assert len(set(all_ids)) == num_examples


@pytest.mark.parametrize('shard_count', [2, 3])
def test_drop_remainder_gives_equal_shards(shard_count):
  source = _memory_source(29)
  counts, seen = [], set()
  for shard_index in range(shard_count):
    ids = _ids(
      pipeline.make_loader(
        source,
        batch_size=3,
        image_size=8,
        seed=1,
        num_epochs=1,
        keys=('crop_id',),
        shard_index=shard_index,
        shard_count=shard_count,
      )
    )
    counts.append(len(ids))
    assert not seen & set(ids)
    seen |= set(ids)
  per_shard = 29 // shard_count
  assert counts == [per_shard // 3 * 3] * shard_count


def test_shard_too_small_for_batch_raises():
  with pytest.raises(ValueError, match='fewer than batch_size=8'):
    pipeline.make_loader(
      _memory_source(10),
      batch_size=8,
      image_size=8,
      seed=0,
      shard_index=0,
      shard_count=2,
    )


def test_iter_from_resumes_exactly():
  loader = pipeline.make_loader(
    _memory_source(20),
    batch_size=3,
    image_size=8,
    seed=5,
    keys=('crop_id',),
    shard_index=0,
    shard_count=1,
  )
  assert loader.examples_per_epoch == 20
  iterator = iter(loader)
  for _ in range(4):
    next(iterator)
  expected = _ids([next(iterator) for _ in range(5)])  # Crosses an epoch.
  resumed = loader.iter_from(4)
  assert _ids([next(resumed) for _ in range(5)]) == expected


def test_worker_processes_give_the_same_batches():
  # Spawned workers import this pipeline; also checks the absl flag handling
  # outside absl.app.run (pytest never parses absl flags).
  source = _memory_source(20)
  kwargs = dict(
    batch_size=4,
    image_size=8,
    seed=2,
    num_epochs=2,
    keys=('crop_id', 'label'),
    shard_index=0,
    shard_count=1,
  )
  in_process = list(pipeline.make_loader(source, worker_count=0, **kwargs))
  with_workers = list(pipeline.make_loader(source, worker_count=2, **kwargs))
  # A run with workers resumes where one without them stopped, and back.
  resumed = pipeline.make_loader(source, worker_count=2, **kwargs).iter_from(3)
  assert _ids(resumed) == _ids(in_process[3:])
  resumed.close()
  resumed = pipeline.make_loader(source, worker_count=0, **kwargs).iter_from(3)
  assert _ids(resumed) == _ids(with_workers[3:])
  assert len(with_workers) == len(in_process) == 10
  for a, b in zip(in_process, with_workers):
    assert set(a) == set(b)
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  del with_workers  # Release worker shared memory before the test ends.
