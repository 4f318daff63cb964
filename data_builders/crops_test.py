"""Tests of the shared crop machinery (parallel map, writer, per-photo cropping)."""

import io
import os
import pathlib
import operator

import numpy as np
import pytest
import tensorflow_datasets as tfds
from array_record.python import array_record_module
from PIL import Image
from tensorflow_datasets.core import example_serializer
from tensorflow_datasets.proto import tf_example_pb2

from data_builders import crops


@pytest.mark.parametrize('workers', [0, 2])
def test_ordered_parallel_map_keeps_order_and_pulls_lazily(workers):
  pulled = []

  def items():
    for i in range(40):
      pulled.append(i)
      yield i

  results = crops.ordered_parallel_map(
    operator.neg, items(), workers=workers, window=4
  )
  first = next(results)
  assert first == 0
  assert len(pulled) <= 5  # the window, not the whole input
  assert [first, *results] == [-i for i in range(40)]


def test_sharded_writer_rolls_over_and_names_shards(tmp_path):
  template = tfds.core.ShardedFileTemplate(
    data_dir=tmp_path,
    dataset_name='d',
    split='train',
    filetype_suffix='array_record',
  )
  writer = crops.ShardedArrayRecordWriter(template, max_shard_bytes=100)
  records = [bytes([i]) * 30 for i in range(10)]
  for record in records:
    writer.write(record)
  info = writer.close()
  assert info.shard_lengths == [4, 4, 2] and info.num_bytes == 300
  paths = sorted(tmp_path.iterdir())
  assert [p.name for p in paths] == [
    f'd-train.array_record-0000{i}-of-00003' for i in range(3)
  ]
  read = []
  for path in paths:
    reader = array_record_module.ArrayRecordReader(str(path))
    read.extend(reader.read_all())
    reader.close()
  assert read == records
  empty = crops.ShardedArrayRecordWriter(template.replace(split='val'))
  assert empty.close() is None


def _jpeg(pixels: np.ndarray, **kwargs) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, 'JPEG', **kwargs)
  return buffer.getvalue()


def _crop(task, **options):
  return crops.crop_photo(task, crops.CropOptions(**options))


@pytest.mark.parametrize('labelled', [False, True])
def test_serialize_crop_matches_the_tfds_serializer(labelled):
  features = crops.crop_features('jpeg', labelled=labelled)
  label = {}
  if labelled:
    features['label'].names = ['a', 'b', 'c']
    label = {'label': 'c', 'label_name': 'c'}
  serializer = example_serializer.ExampleSerializer(
    features.get_serialized_info()
  )
  expected = serializer.serialize_example(
    features.encode_example(
      {
        'image': b'\xff\xd8jpeg',
        'origin': 'train_3',
        'box': np.array([1, 2, 30, 40], np.int32),
        'crop_index': np.int32(7),
        'crop_id': 'train_3_7',
        **label,
      }
    )
  )
  fast = crops.serialize_crop(
    b'\xff\xd8jpeg',
    'train_3',
    (1, 2, 30, 40),
    7,
    *((2, 'c') if labelled else ()),
  )
  assert tf_example_pb2.Example.FromString(
    fast
  ) == tf_example_pb2.Example.FromString(expected)


def test_serialize_crop_extra_features_match_the_tfds_serializer():
  """`extra` (grocery_store's coarse labels): ClassLabel, Text and Scalar."""
  features = crops.crop_features(
    'png',
    labelled=True,
    extra={
      'coarse_label': tfds.features.ClassLabel(names=['x', 'y']),
      'coarse_label_name': tfds.features.Text(),
      'score': tfds.features.Scalar(dtype=np.int32),
    },
  )
  features['label'].names = ['a', 'b', 'c']
  serializer = example_serializer.ExampleSerializer(
    features.get_serialized_info()
  )
  expected = serializer.serialize_example(
    features.encode_example(
      {
        'image': b'\x89PNG',
        'origin': 'train/x',
        'box': np.array([0, 0, 30, 40], np.int32),
        'crop_index': np.int32(0),
        'crop_id': 'train/x_0',
        'label': 'b',
        'label_name': 'b',
        'coarse_label': 'y',
        'coarse_label_name': 'y',
        'score': np.int32(-3),
      }
    )
  )
  fast = crops.serialize_crop(
    b'\x89PNG',
    'train/x',
    (0, 0, 30, 40),
    0,
    1,
    'b',
    {'coarse_label': 1, 'coarse_label_name': 'y', 'score': -3},
  )
  assert tf_example_pb2.Example.FromString(
    fast
  ) == tf_example_pb2.Example.FromString(expected)
  with pytest.raises(ValueError, match="'label' is one of the crop features"):
    crops.crop_features('jpeg', True, extra={'label': tfds.features.Text()})


def test_crop_photo_converts_cmyk_and_counts_it():
  rgb = np.full((20, 30, 3), 120, np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(rgb).convert('CMYK').save(buffer, 'JPEG', quality=95)
  task = crops.PhotoTask(
    split='train',
    origin='p',
    source='p.jpg',
    data=buffer.getvalue(),
    boxes=np.array([[0, 0, 10, 10], [5, 5, 30, 20]]),
  )
  result = _crop(task, encoding='png')
  assert (
    result.counts['converted_to_rgb_photos'] == 1
    and result.counts['crops'] == 2
  )
  assert len(result.records) == 2


def test_crop_photo_counts_truncated_jpeg_as_unreadable():
  data = _jpeg(
    np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
  )
  task = crops.PhotoTask(
    split='train',
    origin='p',
    source='p.jpg',
    data=data[: len(data) // 3],
    boxes=np.array([[0, 0, 10, 10]]),
  )
  result = _crop(task)
  assert result.counts['unreadable_photos'] == 1 and result.records == []
  assert 'p.jpg' in result.events[0][1]


def test_draft_scale_only_when_every_crop_stays_large_enough():
  assert crops._draft_scale(np.array([300, 520]), 128) == 2
  assert crops._draft_scale(np.array([1100]), 128) == 8
  assert crops._draft_scale(np.array([300, 100]), 128) == 1
  assert crops._draft_scale(np.array([1000]), None) == 1


def test_config_rejects_bad_options():
  with pytest.raises(ValueError, match='encoding'):
    crops.CropsConfig(name='x', encoding='webp')
  with pytest.raises(ValueError, match='min_side'):
    crops.CropsConfig(name='x', min_side=0)


def test_a_plain_script_that_builds_at_top_level_does_not_crash(
  tiny_raw_data, tmp_path
):
  # No `if __name__ == '__main__':` guard: every worker re-runs the script
  # and dies while starting; the build goes on in the script's process.
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  script = tmp_path / 'plain.py'
  script.write_text(
    'from data_builders.build import build\n'
    f'b = build("rack_crops", config="native", manual_dir={str(tiny_raw_data["racks"])!r}, '
    f'data_dir={str(tmp_path / "out")!r}, num_workers=2)\n'
    'print("built", b.info.splits["train"].num_examples)\n'
  )
  repo = pathlib.Path(__file__).resolve().parents[1]
  out = subprocess.run(
    [sys.executable, str(script)],
    cwd=tmp_path,
    env={**os.environ, 'PYTHONPATH': str(repo)},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert [line for line in out.stdout.splitlines() if line.startswith('built')]
  assert 'building in this process instead' in out.stderr


def test_cut_boxes_gives_the_crops_a_build_stores():
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
  task = crops.PhotoTask(
    split='train',
    origin='p',
    source='p.jpg',
    data=_jpeg(pixels),
    boxes=np.array([[0, 0, 20, 30], [10, 5, 90, 40], [3, 3, 3, 9]]),
    labels=['a', 'b', 'c'],
  )
  options = crops.CropOptions()
  cut = crops.cut_boxes(task, options)
  # The second box reaches outside (clipped), the third is empty (skipped).
  assert [c.box for c in cut.crops] == [(0, 0, 20, 30), (10, 5, 64, 40)]
  assert [c.label_name for c in cut.crops] == ['a', 'b']
  assert [c.image.size for c in cut.crops] == [(20, 30), (54, 35)]
  assert cut.counts['clipped_boxes'] == 1
  assert cut.counts['skipped_empty_boxes'] == 1
  # The build's records hold exactly these crops, encoded.
  records = crops.crop_photo(task, options, {'a': 0, 'b': 1, 'c': 2}).records
  stored = [
    tf_example_pb2.Example.FromString(r).features.feature for r in records
  ]
  for crop, feature in zip(cut.crops, stored):
    assert feature['image'].bytes_list.value[0] == crops.encode_crop(
      crop.image, options
    )
    assert list(feature['box'].int64_list.value) == list(crop.box)
