"""The 'evaluate' mode end to end: checkpoint -> embeddings -> metrics/report."""
import json

import numpy as np

from sspr_jax.data import pipeline
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.evaluate import gallery
from sspr_jax.evaluate import run as eval_run
from sspr_jax.objectives import build_objective
from sspr_jax.train import trainer
from sspr_jax.train.trainer_test import _batches, tiny_config


def saved_metrics(workdir):
  return [r['metrics'] for r in json.loads((workdir / 'eval_metrics.json').read_text())]


def _config(tiny_raw_data, tiny_datasets, **overrides):
  config = tiny_config('simclr', **overrides)
  config.data.update(dict(
      source='manual', data_dir=str(tiny_datasets),
      sku110k_manual_dir=str(tiny_raw_data['archive'].parent),
      rack_manual_dir=str(tiny_raw_data['racks']),
      sku110k_config='128', rack_config='native'))
  config.evaluate.image_size = 32
  config.evaluate.batch_size = 16
  config.evaluate.update(dict(heads=['linear'], head_steps=20))
  return config


def test_evaluate_mode_reports_checkpoint_and_random_baseline(
    tiny_raw_data, tiny_datasets, tmp_path):
  config = _config(tiny_raw_data, tiny_datasets, total_steps=2,
                   eval_every_steps=2)
  crops = pipeline.open_source('sku110k_crops', split='train',
                               data_dir=tiny_datasets, config='128')
  objective = build_objective(config)
  logged = []
  evaluate = eval_run.periodic_evaluator(config, str(tmp_path),
                                         objective.network.backbone)
  trainer.train(config, str(tmp_path), objective=objective,
                batches=_batches(crops, config), num_examples=len(crops),
                evaluate=lambda state: logged.append(evaluate(state)) or logged[-1])
  assert set(logged[0]) >= {'eval/full_map/cosine', 'eval/strict_knn_accuracy'}

  results = eval_run.run(config, str(tmp_path))
  assert [r['name'] for r in results] == ['simclr step 2', 'random init']
  report = (tmp_path / 'report.md').read_text()
  assert 'simclr step 2' in report and 'random init' in report
  assert 0 <= saved_metrics(tmp_path)[0]['standard/linear/accuracy'] <= 1
  assert 'strict/linear/map' in saved_metrics(tmp_path)[0]
  for png in ('map_over_steps.png', 'class_similarity.png', 'embedding_map.png',
              'confusion_strict_linear.png'):
    assert (tmp_path / 'evaluation' / png).stat().st_size > 1000
    assert f'evaluation/{png}' in report
  saved = json.loads((tmp_path / 'eval_metrics.json').read_text())
  npz = np.load(tmp_path / saved[0]['embeddings'])
  assert set(npz.files) >= {'features', 'features_normalized', 'label', 'origin',
                            'crop_id', 'class_names'}
  # The periodic evaluator saw the same final state as the checkpoint.
  np.testing.assert_allclose(saved[0]['metrics']['full_map/cosine'],
                             logged[-1]['eval/full_map/cosine'], rtol=1e-5)

  # The reported numbers are the gallery metrics of the checkpoint's features.
  racks = pipeline.open_source('rack_crops', split='train',
                               data_dir=tiny_datasets, config='native')
  emb = embed_lib.embed(embed_lib.load_backbone(str(tmp_path)), racks,
                        image_size=32, batch_size=16)
  assert emb['features'].shape[0] == len(racks)
  expected = gallery.full_gallery_map(emb['features'], emb['label'])['map']
  np.testing.assert_allclose(saved[0]['metrics']['full_map/cosine'], expected,
                             rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(emb['features_normalized'], axis=1),
                             1.0, rtol=1e-5)
