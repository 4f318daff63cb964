"""The 'evaluate' mode end to end: checkpoint -> embeddings -> metrics/report."""

import json
import re

import numpy as np

from sspr_jax.data import pipeline
from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.evaluate import gallery
from sspr_jax import modes
from sspr_jax.core import config_check
from sspr_jax.evaluate import evaluators
from sspr_jax.modes import common
from sspr_jax.modes import evaluate as evaluate_mode
from sspr_jax.testing import evaluation_config as _config
from sspr_jax.testing import train_tiny as _train


def saved_metrics(workdir):
  return [
    r['metrics'] for r in json.loads((workdir / 'metrics.json').read_text())
  ]


def _evaluate(config, workdir):
  ((_, settings),) = modes.parse(config)
  return evaluate_mode.run(settings, str(workdir))


def test_evaluate_mode_reports_checkpoint_and_random_baseline(
  tiny_raw_data, tiny_datasets, tmp_path, capsys
):
  config = _config(
    tiny_raw_data, tiny_datasets, total_steps=2, eval_every_steps=2
  )
  crops = pipeline.open_source(
    'sku110k_crops', split='train', data_dir=tiny_datasets, config='128'
  )
  config.mode = 'pretrain'
  ((_, pretrain_settings),) = modes.parse(config)
  labeled = common.open_gallery(
    pretrain_settings.gallery_data, str(tmp_path), pretrain_settings.scoring
  )
  logged = []

  class Logged:  # The periodic evaluators, recording what they return.
    def __init__(self, evaluator):
      self.evaluator = evaluator

    def run(self, variables):
      logged.append(self.evaluator.run(variables))
      return logged[-1]

  periodic = evaluators.build(
    pretrain_settings.periodic,
    labeled,
    pretrain_settings.objective.network.backbone,
  )
  _train(
    config,
    tmp_path,
    crops,
    objective=pretrain_settings.objective,
    evaluators=[(Logged(e), 2) for e in periodic],
  )
  logged = [{f'eval/{k}': v for r in logged for k, v in r.items()}]
  assert set(logged[0]) >= {'eval/full_map/cosine', 'eval/strict_knn_accuracy'}

  config.mode = 'evaluate'
  capsys.readouterr()
  results = _evaluate(config, tmp_path)
  assert [r['name'] for r in results] == ['simclr step 2', 'random init']
  # The report table, then where everything went.
  printed = capsys.readouterr().out
  table, _, wrote = printed.partition('Wrote:')
  assert '| simclr step 2 |' in table and '| random init |' in table
  for name in ('report.md', 'metrics.json', 'evaluation'):
    assert str(tmp_path / name) in wrote
  report = (tmp_path / 'report.md').read_text()
  assert 'simclr step 2' in report and 'random init' in report
  assert 0 <= saved_metrics(tmp_path)[0]['standard/linear/accuracy'] <= 1
  assert 'strict/linear/map' in saved_metrics(tmp_path)[0]
  for png in (
    'map_over_steps.png',
    'class_similarity.png',
    'embedding_map.png',
    'confusion_strict_linear.png',
  ):
    assert (tmp_path / 'evaluation' / png).stat().st_size > 1000
    assert f'evaluation/{png}' in report
  saved = json.loads((tmp_path / 'metrics.json').read_text())
  npz = np.load(tmp_path / saved[0]['embeddings'])
  assert set(npz.files) >= {
    'features',
    'features_normalized',
    'label',
    'origin',
    'crop_id',
    'class_names',
  }
  # The periodic evaluator saw the same final state as the checkpoint.
  np.testing.assert_allclose(
    saved[0]['metrics']['full_map/cosine'],
    logged[-1]['eval/full_map/cosine'],
    rtol=1e-5,
  )

  # The reported numbers are the gallery metrics of the checkpoint's features.
  racks = pipeline.open_source(
    'rack_crops', split='train', data_dir=tiny_datasets, config='native'
  )
  emb = embed_lib.embed(
    backbone_names.load_backbone(str(tmp_path)),
    racks,
    image_size=32,
    batch_size=16,
  )
  assert emb['features'].shape[0] == len(racks)
  expected = gallery.full_gallery_map(emb['features'], emb['label'])['map']
  np.testing.assert_allclose(
    saved[0]['metrics']['full_map/cosine'], expected, rtol=1e-6
  )
  np.testing.assert_allclose(
    np.linalg.norm(emb['features_normalized'], axis=1), 1.0, rtol=1e-5
  )


def test_evaluate_config_takes_checkpoints_and_dataset_flags(
  tiny_raw_data, tiny_datasets, tmp_path
):
  """configs/evaluate.py: a step folder and a folder of VOC rack photos."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  from configs import evaluate as evaluate_config  # pylint: disable=g-import-not-at-top
  from sspr_jax.testing import REPO, child_env  # pylint: disable=g-import-not-at-top

  run_dir = tmp_path / 'run'
  config = _config(tiny_raw_data, tiny_datasets, total_steps=2)
  crops = pipeline.open_source(
    'sku110k_crops', split='train', data_dir=tiny_datasets, config='128'
  )
  _train(config, run_dir, crops)
  workdir = tmp_path / 'eval'
  cmd = [
    sys.executable,
    'main.py',
    '--config',
    'configs/evaluate.py',
    '--workdir',
    str(workdir),
    f'--config.checkpoints={run_dir}/checkpoints/2',
    f'--config.dataset={tiny_raw_data["racks"]}',
    '--config.evaluate.image_size=32',
    '--config.evaluate.heads=',
    '--config.evaluate.scores=cosine,euclidean',
    '--config.evaluate.baselines=random',
  ]
  out = subprocess.run(
    cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=600
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert re.search(rf'^  report.md +{workdir}/report.md$', out.stdout, re.M)
  assert 'Evaluating simclr step 2 (1/2).' in out.stderr
  saved = json.loads((workdir / 'metrics.json').read_text())
  assert [r['name'] for r in saved] == ['simclr step 2', 'random init']
  assert saved[0]['run'] == str(run_dir)
  # The gallery was built from the rack photos into the evaluation workdir.
  assert (workdir / 'tfds' / 'rack_crops').is_dir()
  # The random baseline has the checkpoint's architecture (same width).
  widths = {
    np.load(workdir / r['embeddings'])['features'].shape[1] for r in saved
  }
  assert len(widths) == 1

  ev = evaluate_config.get_config()
  ev.evaluate.update(dict(image_size=32, heads=(), scores=('cosine',)))
  ev.checkpoints = str(tmp_path / 'missing_run')
  with pytest.raises(config_check.ConfigError, match='missing_run'):
    _evaluate(ev, workdir)
  ev.checkpoints, ev.dataset = '', str(tmp_path / 'no_racks_here')
  with pytest.raises(config_check.ConfigError, match='no_racks_here'):
    _evaluate(ev, workdir)
  # No checkpoints anywhere: the baselines alone, on the built TFDS data dir.
  ev.dataset = str(workdir / 'tfds')
  ev.model.backbone = 'resnet_tiny'
  ev.evaluate.baselines = ('random',)
  results = _evaluate(ev, tmp_path / 'baselines_only')
  assert [r['name'] for r in results] == ['random init']


def test_catalogue_evaluator_ranks_a_gallery_split_against_the_catalogue(
  tmp_path,
):
  """grocery_store:test as the gallery, its iconic images as the catalogue."""
  import pathlib  # pylint: disable=g-import-not-at-top

  from configs import common  # pylint: disable=g-import-not-at-top
  from sspr_jax.evaluate import catalogue  # pylint: disable=g-import-not-at-top

  clone = (
    pathlib.Path(__file__).parents[2] / 'data_builders/grocery_store/dummy_data'
  )
  config = common.pretrain_config('simclr')
  config.mode = 'evaluate'
  config.dataset = 'grocery_store:test'
  config.data.update(
    grocery_store_manual_dir=str(clone), data_dir=str(tmp_path / 'tfds')
  )
  config.evaluate.update(
    dict(
      image_size=32,
      baselines=('pixels:8',),
      evaluators=('gallery_map', 'catalogue'),
      catalogue='grocery_store:iconic',
      scores=('cosine',),
    )
  )
  ((_, settings),) = modes.parse(config)
  (result,) = evaluate_mode.run(settings, str(tmp_path))

  backbone = backbone_names.pixels_backbone(8)
  emb = {}
  for split in ('test', 'iconic'):
    source = pipeline.open_source(
      'grocery_store',
      split=split,
      data_dir=tmp_path / 'tfds',
      config='native',
    )
    names = np.asarray(source.dataset_info.features['label'].names)
    e = embed_lib.embed(backbone, source, image_size=32, keys=('label',))
    emb[split] = (e['features'], names[e['label']])
  want = catalogue.catalogue_metrics(*emb['test'], *emb['iconic'])
  assert len(emb['test'][1]) == 3 and len(emb['iconic'][1]) == 3
  for key, value in want.items():
    assert result['metrics'][key] == value, key
  assert '| catalogue_top1/cosine |' in (tmp_path / 'report.md').read_text()


def test_catalogue_evaluator_needs_a_catalogue_and_a_split():
  from configs import common  # pylint: disable=g-import-not-at-top

  config = common.pretrain_config('simclr')
  config.mode = 'evaluate'
  config.evaluate.evaluators = ('catalogue',)
  with np.testing.assert_raises_regex(
    config_check.ConfigError, 'needs config.evaluate.catalogue'
  ):
    modes.parse(config)
  config.evaluate.evaluators = ('gallery_map',)
  config.dataset = 'grocery_store:'
  with np.testing.assert_raises_regex(
    config_check.ConfigError, 'name a split after the colon'
  ):
    modes.parse(config)
  config.dataset = 'grocery_store:test'
  with np.testing.assert_raises_regex(
    config_check.ConfigError, 'needs config.data.grocery_store_manual_dir'
  ):
    modes.parse(config)
