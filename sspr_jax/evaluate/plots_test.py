"""The report's figures say what they show, and reach TensorBoard as images."""

import io
import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from sspr_jax.core import metrics as metrics_lib
from sspr_jax.evaluate import plots
from sspr_jax.evaluate import report

NAMES = [f'product {i:02d}' for i in range(80)]


@pytest.fixture(autouse=True)
def _close_figures():
  yield
  plt.close('all')


def _gallery(num_classes, per_class=5, spread=1.0, offset=0.0, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(num_classes), per_class)
  centres = rng.normal(size=(num_classes, 16))
  noise = rng.normal(size=(len(labels), 16))
  return offset + spread * (centres[labels] + noise), labels


def _images(logdir) -> dict:
  """tag -> (step, decoded image) of the image summaries in `logdir`."""
  return {
    value.tag: (
      event.step,
      Image.open(io.BytesIO(value.image.encoded_image_string)),
    )
    for event in metrics_lib.read_events(logdir)
    for value in event.summary.value
    if value.HasField('image')
  }


def test_metric_keys_in_words():
  assert plots.metric_label('full_map/cosine') == 'Full-gallery mAP, cosine'
  assert plots.metric_label('average_map/euclidean_normalized') == (
    'Average-gallery mAP, normalised Euclidean'
  )
  assert plots.metric_label('strict/mlp/map') == (
    'MLP head test 1/rank mAP, strict origin split'
  )
  assert plots.metric_label('strict_knn_accuracy') == (
    'kNN accuracy, strict origin split'
  )
  assert plots.metric_label('something/new') == 'something/new'


def test_map_curve_names_axes_runs_and_baselines(tmp_path):
  run_a, run_b = tmp_path / 'simclr_run', tmp_path / 'moco_run'
  run_a.mkdir()
  run_b.mkdir()
  with open(run_a / 'metrics.jsonl', 'w') as f:
    for step in (100, 200):
      f.write(json.dumps({'step': step, 'eval/full_map/cosine': 0.2}) + '\n')
  results = [
    {
      'run': str(run_a),
      'name': 'simclr step 300',
      'step': 300,
      'metrics': {'full_map/cosine': 0.4},
    },
    {
      'run': str(run_b),
      'name': 'moco step 50',
      'step': 50,
      'metrics': {'full_map/cosine': 0.3},
    },
    {
      'run': 'baseline',
      'name': 'random init',
      'step': None,
      'metrics': {'full_map/cosine': 0.1},
    },
  ]
  fig = plots.scores_over_steps_figure(results)
  (ax,) = fig.axes
  assert ax.get_xlabel() == 'Checkpoint step'
  assert ax.get_ylabel() == 'Full-gallery mAP, cosine (%)'
  legend = [t.get_text() for t in ax.get_legend().get_texts()]
  assert legend == [
    'simclr (run simclr_run)',
    'moco (run moco_run)',
    'random init (baseline)',
  ]
  assert ax.get_title() == (
    'Full-gallery mAP, cosine, per checkpoint\n'
    'simclr (run simclr_run), steps 100–300; moco (run moco_run), step 50'
  )
  # The logged periodic values and the evaluated checkpoint, in %.
  np.testing.assert_allclose(ax.lines[0].get_ydata(), [20, 20, 40])
  path = plots.scores_over_steps(results, str(tmp_path / 'curve.png'))
  assert Image.open(path).size[0] > 500
  # Baselines only: no curve.
  assert plots.scores_over_steps_figure(results[2:]) is None


def test_similarity_of_near_constant_embeddings_gets_a_fitted_scale():
  # As a random-init ResNet-50: every cosine near 0.99.
  features, labels = _gallery(6, spread=0.05, offset=1.0)
  fig = plots.class_similarity_figure(
    features,
    labels,
    NAMES,
    backbone='random init',
    run='baseline',
  )
  ax, bar = fig.axes
  vmin, vmax = ax.images[0].get_clim()
  x = features / np.linalg.norm(features, axis=1, keepdims=True)
  means = np.stack([x[labels == c].mean(0) for c in range(6)])
  means /= np.linalg.norm(means, axis=1, keepdims=True)
  off = (means @ means.T)[~np.eye(6, dtype=bool)]
  assert off.min() > 0.98  # The case: near-constant similarities.
  # Not 0 to 1: the 1st to 99th percentile of the off-diagonal cosines.
  assert off.min() - 1e-6 <= vmin < vmax <= off.max() + 1e-6
  np.testing.assert_allclose(
    (vmin, vmax), np.percentile(off, [1, 99]), rtol=1e-5
  )
  assert bar.get_ylabel().startswith('cosine of the class-mean embeddings')
  assert ax.get_title() == (
    'Class-mean embedding similarity (6 classes)\nrandom init'
  )
  names = [t.get_text() for t in ax.get_xticklabels()]
  assert names == NAMES[:6]
  assert [t.get_text() for t in ax.get_yticklabels()] == NAMES[:6]


def test_similarity_of_many_classes_is_ticked_by_index_with_a_note():
  features, labels = _gallery(50, per_class=2)
  fig = plots.class_similarity_figure(
    features, labels, NAMES, backbone='moco step 8', run='/runs/moco_a'
  )
  ax = fig.axes[0]
  assert ax.get_title().endswith('\nmoco step 8 (run moco_a)')
  ticks = [t.get_text() for t in ax.get_xticklabels()]
  assert ticks[:3] == ['0', '3', '6'] and not set(ticks) & set(NAMES)
  assert ax.get_xlabel() == 'class (label index)'
  assert any('too many to name' in text for text in plots.figure_texts(fig))
  # Exactly equal similarities still get a range (not an empty one).
  fig = plots.class_similarity_figure(np.ones((6, 4)), np.arange(6) // 2)
  vmin, vmax = fig.axes[0].images[0].get_clim()
  assert vmin < 1 < vmax and vmax - vmin < 0.01


def test_embedding_map_legend_names_classes_or_the_largest_and_others():
  features, labels = _gallery(4)
  fig = plots.embedding_map_figure(
    features, labels, NAMES, backbone='simclr step 5', run='/r/quick'
  )
  ax = fig.axes[0]
  legend = [t.get_text() for t in ax.get_legend().get_texts()]
  assert legend == [f'product {i:02d} (5)' for i in range(4)]
  assert ax.get_title() == (
    'PCA of the L2-normalised embeddings (4 classes)\nsimclr step 5 (run quick)'
  )
  assert ax.get_xlabel().startswith('principal component 1 (')
  assert ax.get_ylabel().endswith('of the variance)')

  # 30 classes, class 7 the largest: the 10 largest in colour, then others.
  features, labels = _gallery(30, per_class=3)
  labels = np.concatenate([labels, [7, 7]])
  features = np.concatenate([features, features[:2]])
  fig = plots.embedding_map_figure(features, labels, NAMES)
  legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
  assert len(legend) == 11
  assert legend[0] == 'others (20 classes, 60 crops)'
  assert legend[1] == 'product 07 (5)'
  assert 'the 10 largest of 30 classes' in fig.axes[0].get_title()
  # No names: the labels.
  fig = plots.embedding_map_figure(features, labels)
  assert fig.axes[0].get_legend().get_texts()[1].get_text() == 'class 7 (5)'


def test_confusion_matrix_is_titled_with_head_split_and_backbone():
  confusion = np.array([[3, 1, 0], [0, 2, 0], [1, 0, 1]])
  fig = plots.confusion_matrix_figure(
    confusion,
    labels=np.array([0, 2, 5]),
    class_names=NAMES,
    head='mlp',
    split='strict',
    backbone='simclr step 1088',
    run='/runs/quickstart',
    accuracy=0.75,
  )
  ax, bar = fig.axes
  assert ax.get_title() == (
    'Confusion matrix, MLP head, strict origin split (8 test crops, '
    'accuracy 75.0 %)\nsimclr step 1088 (run quickstart)'
  )
  assert (ax.get_xlabel(), ax.get_ylabel()) == ('predicted class', 'true class')
  assert [t.get_text() for t in ax.get_yticklabels()] == [
    'product 00',
    'product 02',
    'product 05',
  ]
  assert bar.get_ylabel() == 'fraction of the true class'
  np.testing.assert_allclose(ax.images[0].get_array()[0], [0.75, 0.25, 0])


def test_metrics_writer_logs_png_files_and_arrays_as_images(tmp_path):
  png = tmp_path / 'a.png'
  Image.fromarray(np.full((12, 20, 4), 200, np.uint8)).save(png)
  writer = metrics_lib.MetricsWriter(str(tmp_path), jsonl=False)
  writer.image('figure/png', str(png), 3)
  writer.image('figure/grey', np.linspace(0, 1, 30).reshape(5, 6), 4)
  with pytest.raises(ValueError, match='HxW'):
    writer.image('figure/bad', np.zeros((2, 3, 5)), 0)
  writer.close()
  assert not (tmp_path / 'metrics.jsonl').exists()
  images = _images(tmp_path / 'tensorboard')
  step, image = images['figure/png']
  assert step == 3 and image.size == (20, 12) and image.mode == 'RGB'
  step, image = images['figure/grey']
  assert step == 4 and image.size == (6, 5)
  assert np.asarray(image)[-1, -1, 0] == 255
  # Disabled (not process 0): nothing written.
  other = metrics_lib.MetricsWriter(str(tmp_path / 'p1'), enabled=False)
  other.image('figure/png', str(png), 0)
  other.close()
  assert not (tmp_path / 'p1').exists()


def test_report_figures_are_titled_and_logged_to_tensorboard(tmp_path):
  out_dir = tmp_path / 'evaluation'
  out_dir.mkdir()
  features, labels = _gallery(5)
  emb = {'features': features, 'label': labels}
  details = {
    'strict': {
      'linear': {
        'confusion': np.eye(5, dtype=int) * 2,
        'labels': np.arange(5),
        'accuracy': 1.0,
      }
    }
  }
  figures = report.backbone_figures(
    emb, NAMES[:5], details, 'linear', str(out_dir), 'simclr step 6', '/r/run1'
  )
  assert [title for title, _ in figures] == [
    'Class similarity, simclr step 6',
    'Embedding map, simclr step 6',
    'Confusion matrix, linear head, strict split, simclr step 6',
  ]
  results = [
    {
      'run': '/r/run1',
      'name': 'simclr step 6',
      'step': 6,
      'metrics': {'full_map/cosine': 0.5},
    }
  ]
  writer = metrics_lib.MetricsWriter(str(tmp_path), jsonl=False)
  text = report.write(
    str(tmp_path), results, ['full_map/cosine'], figures, writer=writer
  )
  writer.close()
  assert '| simclr step 6 | 50.00 |' in text
  images = _images(tmp_path / 'tensorboard')
  assert sorted(images) == [
    'evaluation/class_similarity',
    'evaluation/confusion_strict_linear',
    'evaluation/embedding_map',
    'evaluation/map_over_steps',
  ]
  step, image = images['evaluation/class_similarity']
  assert step == 6
  assert image.size == Image.open(out_dir / 'class_similarity.png').size
