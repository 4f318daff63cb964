"""Tests of benchmarks/grocery_store.py on a fake clone in the same layout
(CI has no GroceryStoreDataset): the list readers, variants and a whole
`--smoke` run with its cache."""

import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image

_PATH = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), 'grocery_store.py'
)
_spec = importlib.util.spec_from_file_location('grocery_store_bench', _PATH)
gs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gs)

CLASSES = (
  ('Golden-Delicious', 'Apple', 'Fruit'),
  ('Granny-Smith', 'Apple', 'Fruit'),
  ('Oatly-Oat-Milk', 'Oat-Milk', 'Packages'),
  ('Carrots', 'Carrots', 'Vegetables'),
)
COLOURS = ((220, 200, 40), (80, 200, 60), (40, 60, 200), (230, 120, 20))


def fake_clone(root, per_split=(6, 2, 4)):
  """4 classes; each photo a class colour plus noise, 48x40 px."""
  rng = np.random.default_rng(0)
  dataset = root / 'dataset'
  rows = [
    'Class Name (str),Class ID (int),Coarse Class Name (str),'
    'Coarse Class ID (int),Iconic Image Path (str),'
    'Product Description Path (str)'
  ]
  coarse_ids = {}
  for i, (name, coarse, kind) in enumerate(CLASSES):
    cid = coarse_ids.setdefault(coarse, len(coarse_ids))
    iconic = f'iconic-images-and-descriptions/{kind}/{coarse}/{name}'
    (dataset / iconic).mkdir(parents=True)
    _photo(dataset / iconic / f'{name}_Iconic.jpg', COLOURS[i], rng)
    rows.append(
      f'{name},{i},{coarse},{cid},/{iconic}/{name}_Iconic.jpg,'
      f'/{iconic}/{name}_Description.txt'
    )
    for split, count in zip(('train', 'val', 'test'), per_split):
      folder = dataset / split / kind / coarse / name
      folder.mkdir(parents=True, exist_ok=True)
      for k in range(count):
        path = folder / f'{name}_{k:03d}.jpg'
        _photo(path, COLOURS[i], rng)
        with open(dataset / f'{split}.txt', 'a') as f:
          f.write(f'{path.relative_to(dataset)}, {i}, {cid}\n')
  (dataset / 'classes.csv').write_text('\n'.join(rows) + '\n')
  return root


def _photo(path, colour, rng):
  pixels = np.clip(
    np.asarray(colour) + rng.normal(0, 30, (40, 48, 3)), 0, 255
  ).astype(np.uint8)
  Image.fromarray(pixels).save(path)


def test_readers_and_variants(tmp_path):
  dataset = gs.check_clone(fake_clone(tmp_path))
  rows = gs.read_split(dataset, 'train')
  assert len(rows) == 24 and rows[0][1] == 0 and rows[-1][1] == 3
  assert len(gs.read_split(dataset, 'train', per_class=2)) == 8
  # The final protocol's train + val photos are one `train` split.
  rows = gs.read_split(dataset, 'train') + gs.read_split(dataset, 'val')
  folder = gs.pretrain_folder(tmp_path / 'w', dataset, ('train', 'val'), rows)
  from data_builders.image_folder import image_folder_dataset_builder as f  # pylint: disable=g-import-not-at-top

  tasks = list(f.find_source(folder).tasks())
  assert len(tasks) == len(rows) == 32 and {t.split for t in tasks} == {'train'}
  rows = gs.read_split(dataset, 'train')
  iconic = gs.read_iconic(dataset)
  assert [label for _, label in iconic] == [0, 1, 2, 3]
  assert all(path.is_file() for path, _ in iconic)
  assert gs.parse_variant('simclr;@color_strength=0.1;batch_size=32') == (
    'simclr',
    {'simclr.color_strength': 0.1, 'batch_size': 32},
  )
  assert gs.parse_variant('moco;@crop_scale=(0.4, 1.0)')[1] == {
    'moco.crop_scale': (0.4, 1.0)
  }
  with pytest.raises(SystemExit, match='not a clone of GroceryStoreDataset'):
    gs.check_clone(tmp_path / 'dataset')
  (dataset / 'val.txt').write_text('val/x.jpg, 0\n')
  with pytest.raises(SystemExit, match=r'val.txt:1: expected'):
    gs.read_split(dataset, 'val')


def test_minutes_budget_and_objectives(tmp_path, monkeypatch):
  calls = []

  def fake_calibrate(config, root, name):
    calls.append((config.total_steps, root, name))
    # 10 steps of 0.5 s after 25 s of start-up and compile.
    return {'seconds_per_step': 0.5, 'steps': 10, 'seconds': 30.0}

  monkeypatch.setattr(gs.fm, 'calibrate', fake_calibrate)
  workdir = tmp_path / 'runs' / 'simclr' / 'seed0_minutes1'
  plan = gs.budget_steps(gs.make_config('simclr', 0, '', '', 1), workdir, 1)
  # 60 s of budget less the 25 s the run pays again, at 0.5 s a step.
  assert plan['total_steps'] == 70 and plan['overhead_seconds'] == 25.0
  assert calls == [(1, workdir.parent, 'seed0_minutes1')]
  # A resumed run trains to the same step without timing again.
  assert gs.budget_steps(None, workdir, 1) == plan and len(calls) == 1

  args = gs.parse_args(
    ['--clone', 'c', '--work', 'w', '--objectives', 'moco,simclr_imagenet']
  )
  assert args.variant == ['moco', 'simclr_imagenet']
  with pytest.raises(SystemExit):
    gs.parse_args(['--clone', 'c', '--work', 'w', '--objectives', 'swav'])
  # Two runs of 30 min, 1.5 min of start-up each, and each backbone's
  # embedding at its rate (+ 0.5 min for the kNN and the linear head).
  expected = gs.expected_minutes(
    [('resnet_tiny', True), ('efficientnet_lite0', True)], 2400, 30
  )
  assert expected == pytest.approx(
    2 * 31.5 + 2400 / 600 / 60 + 2400 / 40 / 60 + 2 * 0.5
  )


def test_smoke_run_scores_every_backbone_and_reuses_its_results(tmp_path):
  clone = fake_clone(tmp_path / 'clone')
  argv = [
    '--clone',
    str(clone),
    '--work',
    str(tmp_path / 'work'),
    '--smoke',
    '--no-imagenet',
    '--variant',
    'simclr;@color_strength=0.0',
  ]
  results = gs.main(argv)
  names = {r['name'] for r in results.values()}
  assert names == {
    'simclr @color_strength=0.0',
    'random init',
    'raw pixels 16x16',
    'raw pixels 32x32',
  }
  for r in results.values():
    for metric in gs.METRICS:
      assert 0.0 <= r[metric] <= 1.0, (r['name'], metric)
  trained = next(r for r in results.values() if r['pretrain'])
  assert trained['pretrain']['steps'] == gs.SMOKE['steps']
  # Colour is all that tells these classes apart: pixels find it.
  pixels = next(r for r in results.values() if r['name'] == 'raw pixels 16x16')
  assert pixels['catalogue_top1'] == pixels['knn_accuracy'] == 1.0
  root = tmp_path / 'work' / 'smoke_select'
  saved = json.loads((root / 'results.json').read_text())
  assert saved.keys() == results.keys()
  table = (root / 'results.md').read_text()
  assert '| raw pixels 16x16 |' in table and 'protocol select' in table
  # A rerun trains and scores nothing: every row comes from results.json.
  mtime = (root / 'results.json').stat().st_mtime_ns
  assert gs.main(argv) == results
  assert (root / 'results.json').stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
  'objective', ['simclr', 'moco', 'rotnet', 'jigsaw', 'simclr_imagenet']
)
def test_config_parses_for_pretrain_and_evaluate(objective, tmp_path):
  from configs import grocery_store as gs_config  # pylint: disable=g-import-not-at-top
  from sspr_jax import modes  # pylint: disable=g-import-not-at-top

  config = gs_config.get_config(objective)
  config.mode = 'pretrain,evaluate'
  config.data.grocery_store_manual_dir = str(fake_clone(tmp_path))
  (_, pretrain), (_, evaluate) = modes.parse(config)
  assert evaluate.gallery_data.gallery_split == 'val'
  assert evaluate.catalogue_data.gallery_split == 'iconic'
  assert 'catalogue' in evaluate.evaluators
  name = objective.removesuffix('_imagenet')
  if name in ('simclr', 'moco'):
    assert config[name].color_strength == gs_config.COLOR_STRENGTH
  if objective.endswith('_imagenet'):
    assert (pretrain.init_from.kind, pretrain.init_from.arg) == (
      'imagenet',
      'efficientnet_lite0',
    )
    assert config[name].view_size == gs_config.IMAGENET_VIEW_SIZE
  with pytest.raises(ValueError, match='valid: simclr, moco, rotnet, jigsaw'):
    gs_config.get_config('swav')
