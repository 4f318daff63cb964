"""Tests of `grocery_store` on the fake clone in `dummy_data/`."""

import shutil
import sys

import pytest
import tensorflow_datasets as tfds

from data_builders import build as build_lib
from data_builders import make_dummy_data
from data_builders.grocery_store import GroceryStore
from data_builders.grocery_store import grocery_store_dataset_builder as grocery
from data_builders.rack_crops import RackCrops
from sspr_jax.data import pipeline

CLONE = make_dummy_data.dummy_dir('grocery_store')
CLONE_COMMAND = 'git clone https://github.com/marcusklasson/GroceryStoreDataset'
APPLE, MILK = 'Fruit/Apple', 'Packages/Oat-Milk/Oatly-Oat-Milk'
# Split: crop_id -> (label, label_name, coarse_label, coarse_label_name), as
# make_dummy_data writes the clone (Granny-Smith_002 is listed but missing).
EXPECTED = {
  'train': {
    f'train/{APPLE}/Golden-Delicious/Golden-Delicious_001_0': (
      0,
      'Golden-Delicious',
      0,
      'Apple',
    ),
    f'train/{APPLE}/Golden-Delicious/Golden-Delicious_002_0': (
      0,
      'Golden-Delicious',
      0,
      'Apple',
    ),
    f'train/{APPLE}/Granny-Smith/Granny-Smith_001_0': (
      1,
      'Granny-Smith',
      0,
      'Apple',
    ),
    f'train/{MILK}/Oatly-Oat-Milk_001_0': (2, 'Oatly-Oat-Milk', 1, 'Oat-Milk'),
  },
  'val': {
    f'val/{APPLE}/Granny-Smith/Granny-Smith_003_0': (
      1,
      'Granny-Smith',
      0,
      'Apple',
    ),
    f'val/{MILK}/Oatly-Oat-Milk_002_0': (2, 'Oatly-Oat-Milk', 1, 'Oat-Milk'),
  },
  'test': {
    f'test/{APPLE}/Golden-Delicious/Golden-Delicious_003_0': (
      0,
      'Golden-Delicious',
      0,
      'Apple',
    ),
    f'test/{APPLE}/Granny-Smith/Granny-Smith_004_0': (
      1,
      'Granny-Smith',
      0,
      'Apple',
    ),
    f'test/{MILK}/Oatly-Oat-Milk_003_0': (2, 'Oatly-Oat-Milk', 1, 'Oat-Milk'),
  },
  'iconic': {
    'iconic-images-and-descriptions/Fruit/Apple/Golden-Delicious/'
    'Golden-Delicious_Iconic_0': (0, 'Golden-Delicious', 0, 'Apple'),
    'iconic-images-and-descriptions/Fruit/Apple/Granny-Smith/'
    'Granny-Smith_Iconic_0': (1, 'Granny-Smith', 0, 'Apple'),
    f'iconic-images-and-descriptions/{MILK}/Oatly-Oat-Milk_Iconic_0': (
      2,
      'Oatly-Oat-Milk',
      1,
      'Oat-Milk',
    ),
  },
}


def build(manual_dir, data_dir, config='native'):
  return build_lib.build(
    'grocery_store',
    config=config,
    manual_dir=manual_dir,
    data_dir=data_dir,
    num_workers=0,
  )


def read(data_dir, split, config='native') -> dict[str, dict]:
  source = pipeline.open_source(
    'grocery_store',
    split=split,
    data_dir=data_dir,
    config=config,
    decode_images=True,
  )
  return {
    ex['crop_id'].decode(): ex
    for ex in map(source.__getitem__, range(len(source)))
  }


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  build(CLONE, data_dir)
  return data_dir


def test_dummy_clone_gives_four_splits_with_both_label_levels(built):
  builder = tfds.builder_from_directory(
    str(built / 'grocery_store' / 'native' / GroceryStore.VERSION)
  )
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {
    'train': 4,
    'val': 2,
    'test': 3,
    'iconic': 3,
  }
  features = builder.info.features
  assert features['label'].names == [
    'Golden-Delicious',
    'Granny-Smith',
    'Oatly-Oat-Milk',
  ]
  assert features['coarse_label'].names == ['Apple', 'Oat-Milk']
  counts = builder.info.metadata['counts']
  assert counts['train']['missing_photos'] == 1
  assert counts['train']['exif_oriented_photos'] == 1
  for split, expected in EXPECTED.items():
    examples = read(built, split)
    assert set(examples) == set(expected), split
    for crop_id, (label, name, coarse, coarse_name) in expected.items():
      ex = examples[crop_id]
      assert ex['origin'].decode() == crop_id.removesuffix('_0')
      assert ex['crop_index'] == 0
      assert (ex['label'], ex['label_name'].decode()) == (label, name)
      assert features['label'].int2str(ex['label']) == name
      assert (ex['coarse_label'], ex['coarse_label_name'].decode()) == (
        coarse,
        coarse_name,
      )
      assert features['coarse_label'].int2str(ex['coarse_label']) == (
        coarse_name
      )
      height, width = ex['image'].shape[:2]
      # The whole photo; the EXIF-turned one keeps its box in stored pixels.
      if ex['origin'].decode() == make_dummy_data.GROCERY_EXIF_ROTATED:
        assert (height, width) == (48, 36)
        assert ex['box'].tolist() == [0, 0, 48, 36]
      else:
        assert ex['box'].tolist() == [0, 0, width, height]
  iconic = read(built, 'iconic')
  assert {ex['image'].shape for ex in iconic.values()} == {(20, 20, 3)}
  assert 'tensorflow' not in sys.modules


def test_photos_are_read_in_list_order_then_the_iconic_images():
  source = grocery.find_source(CLONE)
  assert source.splits == ['train', 'val', 'test', 'iconic']
  assert source.num_photos == 5 + 2 + 3 + 3
  tasks = list(source.tasks())
  listed = []
  for split in ('train', 'val', 'test'):
    lines = (CLONE / 'dataset' / f'{split}.txt').read_text().splitlines()
    listed += [(split, line.split(',')[0][: -len('.jpg')]) for line in lines]
  listed += [
    ('iconic', origin.removesuffix('_0')) for origin in EXPECTED['iconic']
  ]
  assert [(t.split, t.origin) for t in tasks] == listed
  # The missing photo is a task too: the worker counts it.
  assert tasks[3].origin.endswith('Granny-Smith_002')


def test_the_crop_feature_contract_is_kept(built):
  """What reads rack_crops (evaluate, pre-training) reads this too."""
  ours = GroceryStore(data_dir=str(built)).info.features
  racks = RackCrops(data_dir=str(built)).info.features
  for name, feature in racks.items():
    assert type(ours[name]) is type(feature), name
  assert set(ours) - set(racks) == {'coarse_label', 'coarse_label_name'}
  # The evaluate mode's embed reads label/origin/crop_id through this loader.
  source = pipeline.open_source(
    'grocery_store', split='iconic', data_dir=built, config='native'
  )
  loader = pipeline.make_loader(
    source,
    batch_size=3,
    image_size=16,
    seed=0,
    shuffle=False,
    num_epochs=1,
    drop_remainder=False,
    resize='shorter_center_crop',
    keys=('label', 'origin', 'crop_id', 'coarse_label'),
  )
  (batch,) = list(loader)
  assert batch['image'].shape == (3, 16, 16, 3)
  assert sorted(batch['label'].tolist()) == [0, 1, 2]
  assert sorted(batch['coarse_label'].tolist()) == [0, 0, 1]


def test_the_dataset_folder_of_a_clone_works_too(tmp_path):
  build(CLONE / 'dataset', tmp_path, config='128')
  for split, expected in EXPECTED.items():
    assert set(read(tmp_path, split, config='128')) == set(expected)


def test_build_cli_builds_and_prints_the_counts(tmp_path, capsys):
  assert build_lib.BUILDERS['grocery_store'] is GroceryStore
  argv = ['grocery_store', '--manual_dir', str(CLONE), '--config', '256']
  argv += ['--data_dir', str(tmp_path), '--num_workers', '0']
  assert build_lib.main(argv) == 0
  out = capsys.readouterr().out
  assert 'grocery_store/256' in out
  for line in (
    'train: 4 crops from 4 photos',
    'missing_photos: 1',
    'val: 2 crops from 2 photos',
    'test: 3 crops from 3 photos',
    'iconic: 3 crops from 3 photos',
  ):
    assert line in out, line
  assert set(read(tmp_path, 'val', config='256')) == set(EXPECTED['val'])


def test_info_names_the_paper_licence_and_clone():
  info = GroceryStore(data_dir='/nonexistent').info
  assert info.citation.startswith('@inproceedings{klasson2019hierarchical,')
  assert (
    'WACV' in info.citation and 'Hierarchical Grocery Store' in info.citation
  )
  assert info.homepage == 'https://github.com/marcusklasson/GroceryStoreDataset'
  assert info.redistribution_info.license.startswith('MIT License')
  description = ' '.join(info.description.split())
  assert 'coarse_label' in description and 'iconic' in description
  assert 'sorted class names' not in description
  assert CLONE_COMMAND in GroceryStore.MANUAL_DOWNLOAD_INSTRUCTIONS


def _incomplete_clone(root, missing):
  shutil.copytree(CLONE, root)
  (root / 'dataset' / missing).unlink()
  return root


@pytest.mark.parametrize(
  'layout, what',
  [
    ('missing', 'does not exist'),
    ('empty', 'no dataset/classes.csv'),
    ('images_only', 'no dataset/classes.csv'),
    ('no_val_list', 'no val.txt'),
  ],
)
def test_a_folder_that_is_not_a_clone_is_a_one_line_error(
  tmp_path, layout, what
):
  manual = tmp_path / 'manual'
  if layout == 'empty':
    manual.mkdir()
  elif layout == 'images_only':
    shutil.copytree(CLONE / 'dataset' / 'train', manual)
  elif layout == 'no_val_list':
    _incomplete_clone(manual, 'val.txt')
  with pytest.raises(FileNotFoundError) as error:
    build(manual, tmp_path / 'data')
  message = str(error.value)
  assert '\n' not in message, message
  assert what in message and CLONE_COMMAND in message, message
  assert str(manual) in message
  assert not list((tmp_path / 'data').rglob('dataset_info.json'))


@pytest.mark.parametrize(
  'file, line, replacement, match',
  [
    ('train.txt', 2, None, r'train.txt:2: coarse id 1 disagrees'),
    ('val.txt', 1, 'val/x.jpg, 7, 0', r'val.txt:1: fine id 7 is not a class'),
    ('test.txt', 3, 'test/x.jpg 2 1', r'test.txt:3: expected `path, fine id'),
    ('classes.csv', 3, 'Granny-Smith,1,Apple,zero,/x.jpg,/x.txt', 'integers'),
    (
      'classes.csv',
      4,
      'Oatly-Oat-Milk,2,Oat-Milk,0,/x.jpg,/x.txt',
      'two names',
    ),
  ],
)
def test_malformed_lists_stop_the_build_naming_file_and_line(
  tmp_path, file, line, replacement, match
):
  manual = shutil.copytree(CLONE, tmp_path / 'clone')
  path = manual / 'dataset' / file
  lines = path.read_text().splitlines()
  if replacement is None:  # fine id 0 (Apple) with coarse id 1 (Oat-Milk)
    replacement = lines[line - 1].rsplit(',', 1)[0] + ', 1'
  lines[line - 1] = replacement
  path.write_text('\n'.join(lines) + '\n')
  with pytest.raises(ValueError, match=match) as error:
    build(manual, tmp_path / 'data')
  assert file in str(error.value)


def test_pretraining_reads_the_train_split(tmp_path):
  """`--config.input.dataset=grocery_store` and its manual dir: the pretrain
  mode's own path (parse, build, open, loader), no synthetic photos."""
  from configs import simclr  # pylint: disable=g-import-not-at-top
  from sspr_jax import modes  # pylint: disable=g-import-not-at-top
  from sspr_jax.data import prepare  # pylint: disable=g-import-not-at-top

  config = simclr.get_config()
  config.input.update(dataset='grocery_store', canvas_size=32)
  config.data.grocery_store_manual_dir = str(CLONE)
  config.data.grocery_store_config = '128'
  ((_, settings),) = modes.parse(config)
  assert settings.dataset == 'grocery_store'
  workdir = tmp_path / 'run'
  prepare.build_datasets(settings.data, str(workdir), which=(settings.dataset,))
  assert not (workdir / 'raw').exists()  # the synthetic source generated none
  source = pipeline.open_source(
    settings.dataset,
    split=config.input.split,
    data_dir=prepare.data_dir(settings.data, str(workdir)),
    config=prepare.dataset_config(settings.data, settings.dataset),
  )
  assert len(source) == 4
  batch = next(
    iter(
      pipeline.pretraining_loader(source, config.input, batch_size=4, seed=0)
    )
  )
  assert batch['image'].shape == (4, 32, 32, 3)
  # Without the clone's folder: one line naming the key.
  config.data.grocery_store_manual_dir = ''
  with pytest.raises(ValueError, match='config.data.grocery_store_manual_dir'):
    prepare.manual_dirs(config.data, str(workdir), ('grocery_store',))
