"""Evaluators: built by name, sharing one gallery's embeddings."""

import jax
import numpy as np
import pytest

from sspr_jax.data import pipeline
from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.evaluate import evaluators
from sspr_jax.evaluate import gallery as gallery_lib


@pytest.fixture(scope='module')
def racks(tiny_datasets):
  return pipeline.open_source(
    'rack_crops', split='train', data_dir=tiny_datasets, config='native'
  )


def test_evaluators_share_one_embedding_and_match_the_metrics(
  racks, monkeypatch
):
  settings = evaluators.Settings(
    image_size=32,
    batch_size=16,
    scores=('cosine', 'euclidean'),
    knn_k=3,
    heads=('linear',),
    head_max_iter=5,
  )
  labeled = evaluators.Gallery(racks, settings)
  backbone = backbone_names.random_backbone('resnet_tiny')
  calls = []
  embed = embed_lib.embed
  monkeypatch.setattr(
    embed_lib, 'embed', lambda *a, **k: calls.append(a) or embed(*a, **k)
  )
  built = evaluators.build(
    ['gallery_map', 'knn', 'few_label'], labeled, backbone.module
  )
  metrics = {}
  for evaluator in built:
    metrics.update(evaluator.run(backbone.variables))
  assert len(calls) == 1  # One embedding for the three evaluators.
  emb = labeled.embeddings(backbone.module, backbone.variables)
  want = gallery_lib.gallery_metrics(
    emb['features'], emb['label'], ('cosine', 'euclidean')
  )
  for key in want:
    np.testing.assert_allclose(metrics[key], want[key])
  columns = [c for e in built for c in e.columns]
  assert columns[:2] == ['full_map/cosine', 'full_map/euclidean']
  assert 'strict_knn_accuracy' in columns and 'strict/linear/map' in columns
  assert all(c in metrics for c in columns)
  assert set(built[2].details) == {'standard', 'strict'}
  for split in ('standard', 'strict'):  # Reaches metrics.json.
    assert (
      metrics[f'{split}/num_test_unseen']
      == built[2].details[split]['num_test_unseen']
    )
  # New variables (a later training step): embedded again.
  other = jax.tree.map(lambda x: x * 1.0, backbone.variables)
  built[0].run(other)
  assert len(calls) == 2


def test_unknown_evaluator_names_the_valid_ones(racks):
  labeled = evaluators.Gallery(racks, evaluators.Settings())
  with pytest.raises(ValueError, match='few_label, gallery_map, knn'):
    evaluators.build(['recall'], labeled, None)
