"""TFDS-style tests: each builder built from the `dummy_data/` it ships.

`tfds.testing.DatasetBuilderTestCase` does this for TFDS's own datasets (build
from `dummy_data/`, compare the split sizes with `SPLITS`, read the examples
back), but it is a `tf.test.TestCase` and reads through `as_dataset()`, so it
needs TensorFlow, which the runtime and CI never install. These tests are its
equivalent without TensorFlow: the real builder writes array_record from the
checked-in dummy data (`make_dummy_data.py` makes it), then the split sizes,
the metadata counts, one example's features and the dataset info are checked
on the copy reloaded from disk (`tfds.builder_from_directory`).
"""

import importlib.util
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_builders import build as build_lib
from data_builders import make_dummy_data

# Split sizes per builder, as DatasetBuilderTestCase's SPLITS (see the cases in
# make_dummy_data.py).
SPLITS = {
  'sku110k_crops': {'train': 4, 'val': 1, 'test': 2},
  'rack_crops': {'train': 4},
  'image_folder': {'train': 3, 'val': 1},
  'grocery_store': {'train': 4, 'val': 2, 'test': 3, 'iconic': 3},
}
# Counts of the bad input in each dummy data set, per split.
COUNTS = {
  'sku110k_crops': {
    'train': {
      'photos': 2,
      'boxes': 6,
      'clipped_boxes': 1,
      'skipped_empty_boxes': 1,
      'missing_photos': 1,
      'boxes_in_skipped_photos': 1,
    },
  },
  'rack_crops': {
    'train': {'photos': 2, 'clipped_boxes': 1, 'skipped_placeholder_boxes': 1}
  },
  'image_folder': {
    'train': {'photos': 3, 'unreadable_photos': 1, 'ignored_files': 1},
    'val': {'photos': 1, 'unreadable_photos': 0},
  },
  'grocery_store': {
    'train': {'photos': 4, 'missing_photos': 1, 'exif_oriented_photos': 1},
    'iconic': {'photos': 3, 'missing_photos': 0, 'exif_oriented_photos': 0},
  },
}


def build(name, tmp_path, manual_dir=None):
  built = build_lib.build(
    name,
    config='native',
    manual_dir=manual_dir or make_dummy_data.dummy_dir(name),
    data_dir=tmp_path / 'tfds',
    num_workers=0,
  )
  # What is on disk, not the builder's in-memory state.
  return tfds.builder_from_directory(built.data_dir)


def examples(builder, split) -> dict[str, dict]:
  source = builder.as_data_source(split=split)
  return {
    ex['crop_id'].decode(): ex
    for ex in map(source.__getitem__, range(len(source)))
  }


@pytest.mark.parametrize('name', sorted(SPLITS))
def test_dummy_data_builds_the_expected_splits_and_counts(name, tmp_path):
  builder = build(name, tmp_path)
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == (
    SPLITS[name]
  )
  counts = builder.info.metadata['counts']
  for split, expected in COUNTS[name].items():
    assert {k: counts[split][k] for k in expected} == expected, split
  for split, num in SPLITS[name].items():
    assert counts[split]['crops'] == num
    assert len(builder.as_data_source(split=split)) == num


def test_sku110k_dummy_features(tmp_path):
  crops = examples(build('sku110k_crops', tmp_path), 'train')
  assert sorted(crops) == ['train_0_0', 'train_0_1', 'train_0_2', 'train_1_0']
  clipped = crops['train_0_2']
  assert clipped['box'].dtype == np.int32
  np.testing.assert_array_equal(clipped['box'], [30, 20, 64, 40])
  assert clipped['image'].shape == (20, 34, 3)
  assert clipped['origin'] == b'train_0'


def test_sku110k_dummy_archive_gives_the_same_crops(tmp_path):
  """The same dummy data as the `SKU110K_fixed.tar.gz` the builder streams."""
  manual = tmp_path / 'manual'
  manual.mkdir()
  with tarfile.open(manual / 'SKU110K_fixed.tar.gz', 'w:gz') as tar:
    tar.add(
      make_dummy_data.dummy_dir('sku110k_crops') / 'SKU110K_fixed',
      arcname='SKU110K_fixed',
    )
  builder = build('sku110k_crops', tmp_path, manual_dir=manual)
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == (
    SPLITS['sku110k_crops']
  )
  # The archive source counts the photo no CSV names; the folder one does not.
  assert builder.info.metadata['counts']['train']['unannotated_photos'] == 1


def test_rack_dummy_features(tmp_path):
  builder = build('rack_crops', tmp_path)
  assert builder.info.features['label'].names == ['chips', 'cola', 'tea']
  crops = examples(builder, 'train')
  assert sorted(crops) == ['rack_1_0', 'rack_1_1', 'rack_2_0', 'rack_2_1']
  tea = crops['rack_2_1']
  assert tea['label_name'] == b'tea'
  assert builder.info.features['label'].int2str(tea['label']) == 'tea'
  np.testing.assert_array_equal(tea['box'], [30, 10, 60, 38])
  assert tea['image'].shape == (28, 30, 3)


def test_image_folder_dummy_features(tmp_path):
  crops = examples(build('image_folder', tmp_path), 'train')
  # Same stem, two extensions: crop_index 0 and 1 in sorted order.
  assert sorted(crops) == [
    'train/aisle 2/shelf_b_0',
    'train/aisle 2/shelf_b_1',
    'train/shelf_a_0',
  ]
  jpg = crops['train/aisle 2/shelf_b_0']
  assert jpg['image'].shape == (24, 36, 3)
  np.testing.assert_array_equal(jpg['box'], [0, 0, 36, 24])
  assert crops['train/aisle 2/shelf_b_1']['image'].shape == (36, 24, 3)


def test_grocery_dummy_features(tmp_path):
  builder = build('grocery_store', tmp_path)
  features = builder.info.features
  assert features['label'].names == [
    'Golden-Delicious',
    'Granny-Smith',
    'Oatly-Oat-Milk',
  ]
  assert features['coarse_label'].names == ['Apple', 'Oat-Milk']
  crops = examples(builder, 'train')
  turned = crops['train/Fruit/Apple/Golden-Delicious/Golden-Delicious_002_0']
  assert turned['image'].shape == (48, 36, 3)  # upright (EXIF orientation 6)
  np.testing.assert_array_equal(turned['box'], [0, 0, 48, 36])
  milk = examples(builder, 'iconic')[
    'iconic-images-and-descriptions/Packages/Oat-Milk/Oatly-Oat-Milk/'
    'Oatly-Oat-Milk_Iconic_0'
  ]
  assert (milk['label'], milk['label_name']) == (2, b'Oatly-Oat-Milk')
  assert (milk['coarse_label'], milk['coarse_label_name']) == (1, b'Oat-Milk')


def test_built_info_carries_citation_homepage_license_description(tmp_path):
  sku = build('sku110k_crops', tmp_path)
  info = sku.info
  assert info.citation.startswith('@inproceedings{goldman2019dense,')
  assert 'CVPR' in info.citation
  assert 'Precise Detection in Densely Packed Scenes' in info.citation
  assert 'Eran Goldman' in info.citation and 'Tal Hassner' in info.citation
  assert info.homepage == 'https://github.com/eg4000/SKU110K_CVPR19'
  license_text = info.redistribution_info.license
  assert 'non-commercial' in license_text and 'academic' in license_text
  description = ' '.join(info.description.split())
  for words in ('Each example is one annotated box', 'clipped', 'Features:'):
    assert words in description, words
  assert 'Configs: native' in description and 'Manual data:' in description
  assert info.description.count('\n') > 10  # multi-line, not one sentence
  for name in ('rack_crops', 'image_folder'):
    info = build(name, tmp_path / name).info
    assert "user's own" in info.citation
    assert "user's" in info.redistribution_info.license
    description = ' '.join(info.description.split())
    assert 'Each example is one' in description
    assert 'Manual data:' in description


@pytest.mark.parametrize('name', sorted(SPLITS))
def test_manual_download_instructions_say_what_goes_in_manual_dir(name):
  text = build_lib.BUILDERS[name].MANUAL_DOWNLOAD_INSTRUCTIONS
  assert 'manual_dir' in text and text.count('\n') >= 2
  if name == 'sku110k_crops':
    assert 'SKU110K_fixed.tar.gz' in text and 'non-commercial' in text


def test_dummy_data_is_small_and_reproducible(tmp_path):
  total = 0
  for name in SPLITS:
    shipped = make_dummy_data.dummy_dir(name)
    total += sum(f.stat().st_size for f in shipped.rglob('*') if f.is_file())
  assert total < 200_000
  make_dummy_data.main(tmp_path)
  for name in SPLITS:
    shipped = make_dummy_data.dummy_dir(name)
    fresh = make_dummy_data.dummy_dir(name, tmp_path)

    def files(root: Path):
      return sorted(
        str(f.relative_to(root)) for f in root.rglob('*') if f.is_file()
      )

    assert files(fresh) == files(shipped), name
    for rel in files(shipped):  # the annotations, byte for byte
      if rel.endswith(('.csv', '.xml', '.txt')):
        assert (fresh / rel).read_bytes() == (shipped / rel).read_bytes(), rel


# File formats. The runtime writes and reads array_record without TensorFlow;
# file_format='tfrecord' (what `as_dataset()` / `tfds.load` read) needs it.


def _without_tensorflow(monkeypatch):
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(
    importlib.util,
    'find_spec',
    lambda name, *a: None if name == 'tensorflow' else find_spec(name, *a),
  )


@pytest.mark.parametrize('name', sorted(SPLITS))
def test_tfrecord_without_tensorflow_is_a_one_line_error(
  name, tmp_path, monkeypatch
):
  _without_tensorflow(monkeypatch)
  with pytest.raises(ValueError, match="'tfrecord' needs TensorFlow") as e:
    build_lib.BUILDERS[name](data_dir=str(tmp_path), file_format='tfrecord')
  assert '\n' not in str(e.value) and '[tfds-cli]' in str(e.value)
  assert not list(tmp_path.iterdir())  # nothing written


def test_cli_file_format_tfrecord_without_tensorflow(tmp_path, monkeypatch):
  _without_tensorflow(monkeypatch)
  with pytest.raises(ValueError, match='needs TensorFlow'):
    build_lib.main(
      [
        'rack_crops',
        '--manual_dir',
        str(make_dummy_data.dummy_dir('rack_crops')),
        '--data_dir',
        str(tmp_path),
        '--file_format',
        'tfrecord',
      ]
    )


@pytest.mark.parametrize('file_format', ['parquet', 'riegeli'])
def test_other_file_formats_are_refused(file_format, tmp_path):
  with pytest.raises(ValueError, match="'array_record' .* or 'tfrecord'"):
    build_lib.BUILDERS['rack_crops'](
      data_dir=str(tmp_path), file_format=file_format
    )


def test_array_record_is_the_default_and_explicit(tmp_path):
  for file_format in (None, 'array_record', tfds.core.FileFormat.ARRAY_RECORD):
    builder = build_lib.BUILDERS['image_folder'](
      data_dir=str(tmp_path), file_format=file_format
    )
    assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD


def test_tfrecord_with_tensorflow_reads_with_as_dataset(tmp_path):
  """Runs only where TensorFlow is installed (`pip install -e '.[tfds-cli]'`)."""
  if importlib.util.find_spec('tensorflow') is None:
    pytest.skip(
      'TensorFlow is not installed: .ci/run runs this in a venv with the '
      '[tfds-cli] extra; the TF-free runtime never needs it'
    )
  built = build_lib.build(
    'rack_crops',
    manual_dir=make_dummy_data.dummy_dir('rack_crops'),
    data_dir=tmp_path,
    num_workers=0,
    file_format='tfrecord',
  )
  assert built.info.file_format == tfds.core.FileFormat.TFRECORD
  assert list(Path(built.data_dir).glob('rack_crops-train.tfrecord-*'))
  ds = tfds.load(
    'rack_crops/native', split='train', data_dir=tmp_path, download=False
  )
  by_id = {ex['crop_id'].numpy().decode(): ex for ex in ds}
  assert sorted(by_id) == ['rack_1_0', 'rack_1_1', 'rack_2_0', 'rack_2_1']
  tea = by_id['rack_2_1']
  np.testing.assert_array_equal(tea['box'].numpy(), [30, 10, 60, 38])
  assert tea['image'].shape == (28, 30, 3)
  assert tea['label_name'].numpy() == b'tea'
