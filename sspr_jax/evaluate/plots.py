"""PNG figures for the evaluation report (matplotlib, no display needed).

Each figure has a `*_figure` function that builds and returns the matplotlib
`Figure` (the tests read its titles, labels and legends) and a function of
the short name that saves it as PNG and returns the path. Every figure is
titled with what it shows and the backbone it shows it for: the backbone's
name (e.g. 'simclr step 1088') and the folder of its pre-training run.
"""

import collections
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import matplotlib.ticker  # pylint: disable=g-import-not-at-top
import numpy as np
from sklearn.decomposition import PCA

from sspr_jax.core import metrics as metrics_lib
from sspr_jax.core import ops

# Up to this many classes the heatmaps name them on their axes.
MAX_NAMED_CLASSES = 40
_MAX_NAME_CHARS = 22

SCORE_NAMES = {
  'inner_product': 'inner product',
  'cosine': 'cosine',
  'euclidean': 'Euclidean',
  'euclidean_normalized': 'normalised Euclidean',
}
SPLIT_NAMES = {'standard': 'standard 80/20', 'strict': 'strict origin'}
HEAD_NAMES = {'linear': 'linear', 'mlp': 'MLP', 'svc': 'SVC'}


def metric_label(key: str) -> str:
  """A metric key in words: 'full_map/cosine' -> 'Full-gallery mAP, cosine'."""
  parts = key.split('/')
  gallery_metrics = {
    'full_map': 'Full-gallery mAP',
    'average_map': 'Average-gallery mAP',
    'full_top1': 'Full-gallery top-1 accuracy',
    'full_top5': 'Full-gallery top-5 accuracy',
  }
  if len(parts) == 2 and parts[0] in gallery_metrics:
    score = SCORE_NAMES.get(parts[1], parts[1])
    return f'{gallery_metrics[parts[0]]}, {score}'
  if key == 'strict_knn_accuracy':
    return 'kNN accuracy, strict origin split'
  if len(parts) == 3 and parts[0] in SPLIT_NAMES:
    split, head, what = parts
    what = {
      'accuracy': 'test accuracy',
      'map': 'test 1/rank mAP',
      'cv_accuracy': 'CV accuracy',
    }.get(what, what)
    return (
      f'{HEAD_NAMES.get(head, head)} head {what}, {SPLIT_NAMES[split]} split'
    )
  return key


def run_folder(run: str | None) -> str | None:
  """The folder name of a pre-training run; None for baselines."""
  if not run or run == 'baseline':
    return None
  return os.path.basename(os.path.normpath(run))


def describe(backbone: str = '', run: str | None = None) -> str:
  """'simclr step 1088 (run quickstart)': a backbone and its run's folder."""
  folder = run_folder(run)
  if backbone and folder:
    return f'{backbone} (run {folder})'
  return backbone or (f'run {folder}' if folder else '')


def _titled(ax, what: str, backbone: str = '', run: str | None = None):
  subtitle = describe(backbone, run)
  ax.set_title(f'{what}\n{subtitle}' if subtitle else what, fontsize=10)


def _short(name) -> str:
  name = str(name)
  if len(name) <= _MAX_NAME_CHARS:
    return name
  return name[: _MAX_NAME_CHARS - 1] + '…'


def _class_name(class_names, label) -> str:
  if class_names is not None and 0 <= int(label) < len(class_names):
    return _short(class_names[int(label)])
  return f'class {int(label)}'


def _class_ticks(ax, classes, class_names, max_named: int) -> bool:
  """Names the heatmap's rows and columns; False when there are too many."""
  if class_names is None or len(classes) > max_named:
    # Indices: about 20 ticks, labelled with the class label (its index).
    every = max(1, int(np.ceil(len(classes) / 20)))
    positions = np.arange(0, len(classes), every)
    ticks = [str(int(classes[p])) for p in positions]
    ax.set_xticks(positions, ticks, fontsize=7)
    ax.set_yticks(positions, ticks, fontsize=7)
    return False
  names = [_class_name(class_names, c) for c in classes]
  size = 7 if len(classes) <= 20 else 5.5
  ax.set_xticks(range(len(classes)), names, rotation=90, fontsize=size)
  ax.set_yticks(range(len(classes)), names, fontsize=size)
  return True


def _index_note(fig, num_classes: int, class_names) -> None:
  reason = (
    'no class names given'
    if class_names is None
    else f'{num_classes} classes, too many to name'
  )
  fig.text(
    0.01,
    0.005,
    f'Ticks are class label indices ({reason}); the names are in '
    'class_names of the evaluation .npz.',
    fontsize=7,
    color='dimgray',
    va='bottom',
  )


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def figure_texts(fig) -> list[str]:
  """Every non-empty text of a figure (titles, labels, ticks, legends, notes)."""
  return [
    t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text()
  ]


def fitted_limits(values, low: float = 1.0, high: float = 99.0):
  """(vmin, vmax) from percentiles of `values`, never an empty range."""
  values = np.asarray(values, np.float64).ravel()
  values = values[np.isfinite(values)]
  if not values.size:
    return 0.0, 1.0
  vmin, vmax = np.percentile(values, [low, high])
  if vmax - vmin < 1e-6:  # All (nearly) equal: a small range around them.
    pad = max(1e-3, 1e-3 * abs(vmax))
    vmin, vmax = vmin - pad, vmax + pad
  return float(vmin), float(vmax)


# --------------------------------------------------------------------------
# mAP per checkpoint step.


def _run_labels(series: dict, objectives: dict) -> dict:
  """Legend entry of each run: 'simclr (run quickstart)', unique."""
  folders = {run: run_folder(run) or run for run in series}
  duplicated = collections.Counter(folders.values())
  labels = {}
  for run in series:
    folder = folders[run] if duplicated[folders[run]] == 1 else run
    objective = objectives.get(run)
    labels[run] = f'{objective} (run {folder})' if objective else folder
  return labels


def scores_over_steps_figure(
  results: list[dict], metric: str = 'full_map/cosine', labels=None
):
  """The figure of `scores_over_steps`; None when no run has a step."""
  series = collections.defaultdict(dict)
  objectives = {}
  baselines = {}
  for r in results:
    if metric not in r['metrics']:
      continue
    if r.get('step') is None:
      baselines[r['name']] = r['metrics'][metric]
      continue
    series[r['run']][r['step']] = r['metrics'][metric]
    # 'simclr step 1088' -> 'simclr': the run's objective.
    suffix = f' step {r["step"]}'
    if r['name'].endswith(suffix):
      objectives.setdefault(r['run'], r['name'][: -len(suffix)])
    try:
      for record in metrics_lib.read_metrics(r['run']):
        if f'eval/{metric}' in record:
          series[r['run']].setdefault(record['step'], record[f'eval/{metric}'])
    except FileNotFoundError:
      pass
  if not any(len(s) > 0 for s in series.values()):
    return None
  labels = {**_run_labels(series, objectives), **(labels or {})}
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, (run, points) in enumerate(series.items()):
    steps = sorted(points)
    ax.plot(
      steps,
      [100 * points[s] for s in steps],
      marker='o',
      color=f'C{i % 10}',
      label=labels[run],
    )
  for i, (name, value) in enumerate(baselines.items(), start=len(series)):
    ax.axhline(
      100 * value,
      linestyle='--',
      color=f'C{i % 10}',
      label=f'{name} (baseline)',
    )
  what = metric_label(metric)
  runs = [
    f'{labels[run]}, steps {min(p)}–{max(p)}'
    if len(p) > 1
    else f'{labels[run]}, step {min(p)}'
    for run, p in series.items()
  ]
  if len(runs) > 2:
    runs = runs[:2] + [f'and {len(runs) - 2} more runs']
  ax.set_title(f'{what}, per checkpoint\n' + '; '.join(runs), fontsize=10)
  ax.set_xlabel('Checkpoint step')
  ax.set_ylabel(f'{what} (%)')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  return fig


def scores_over_steps(
  results: list[dict], path: str, metric: str = 'full_map/cosine', labels=None
) -> str | None:
  """`metric` per checkpoint step for each run, as the thesis plotted its logs.

  Uses the evaluated checkpoints in `results` and, where a run logged them,
  the periodic `eval/<metric>` values in its metrics.jsonl; baselines (no
  step) are dashed horizontal lines. None (nothing written) without a step.
  `labels` ({run folder: legend entry}) replaces the default legend entries
  ('simclr (run quickstart)'), e.g. with a sweep's run names.
  """
  fig = scores_over_steps_figure(results, metric, labels)
  return None if fig is None else _save(fig, path)


# --------------------------------------------------------------------------
# Class similarity.


def class_similarity_figure(
  features: np.ndarray,
  labels: np.ndarray,
  class_names=None,
  max_classes: int = 60,
  *,
  backbone: str = '',
  run: str | None = None,
  max_named: int = MAX_NAMED_CLASSES,
):
  """The figure of `class_similarity`."""
  all_classes = np.unique(labels)
  classes = all_classes[:max_classes]
  labels = np.asarray(labels)
  x = ops.l2_normalize(np.asarray(features, np.float32))
  means = np.stack([x[labels == c].mean(0) for c in classes])
  means = ops.l2_normalize(means)
  sim = np.asarray(means @ means.T)
  off_diagonal = sim[~np.eye(len(classes), dtype=bool)]
  vmin, vmax = fitted_limits(off_diagonal if off_diagonal.size else sim)
  fig, ax = plt.subplots(figsize=(7.5, 6.5))
  im = ax.imshow(sim, cmap='viridis', vmin=vmin, vmax=vmax)
  # Enough decimals to tell the limits apart (random init: 0.990 to 0.997).
  decimals = int(np.clip(np.ceil(-np.log10(vmax - vmin)) + 1, 2, 8))
  bar = fig.colorbar(
    im,
    ax=ax,
    shrink=0.8,
    extend='both',
    format=matplotlib.ticker.FormatStrFormatter(f'%.{decimals}f'),
  )
  bar.set_label(
    'cosine of the class-mean embeddings\n'
    '(scale: 1st to 99th percentile off the diagonal)',
    fontsize=8,
  )
  named = _class_ticks(ax, classes, class_names, max_named)
  if not named:
    _index_note(fig, len(classes), class_names)
  shown = (
    f'{len(classes)} classes'
    if len(classes) == len(all_classes)
    else f'first {len(classes)} of {len(all_classes)} classes'
  )
  _titled(ax, f'Class-mean embedding similarity ({shown})', backbone, run)
  ax.set_xlabel('class' if named else 'class (label index)')
  ax.set_ylabel('class' if named else 'class (label index)')
  return fig


def class_similarity(
  features: np.ndarray,
  labels: np.ndarray,
  path: str,
  class_names=None,
  max_classes: int = 60,
  *,
  backbone: str = '',
  run: str | None = None,
) -> str:
  """Cosine similarity of the class-mean embeddings (first `max_classes`).

  The colour scale spans the 1st to 99th percentile of the off-diagonal
  similarities (the diagonal is 1), so that a backbone whose cosines all lie
  near 0.99 (a random-init ResNet-50) still shows its structure. Classes are
  named on the axes up to `MAX_NAMED_CLASSES`, else ticked by label index.
  """
  fig = class_similarity_figure(
    features, labels, class_names, max_classes, backbone=backbone, run=run
  )
  return _save(fig, path)


# --------------------------------------------------------------------------
# Embedding map.


def embedding_map_figure(
  features: np.ndarray,
  labels: np.ndarray,
  class_names=None,
  max_classes: int = 10,
  *,
  backbone: str = '',
  run: str | None = None,
):
  """The figure of `embedding_map`."""
  x = np.asarray(ops.l2_normalize(np.asarray(features, np.float32)))
  labels = np.asarray(labels)
  components = max(1, min(2, x.shape[0], x.shape[1]))
  pca = PCA(n_components=components, random_state=0)
  xy = pca.fit_transform(x)
  ratios = list(pca.explained_variance_ratio_)
  if components < 2:  # One crop or a 1-d feature: a line.
    xy = np.concatenate([xy, np.zeros_like(xy)], axis=1)
    ratios.append(0.0)
  counts = collections.Counter(labels.tolist())
  ranked = [c for c, _ in counts.most_common()]
  shown = ranked if len(ranked) <= max_classes else ranked[:max_classes]
  others = ranked[len(shown) :]
  fig, ax = plt.subplots(figsize=(8, 5.5))
  if others:
    m = np.isin(labels, others)
    ax.scatter(
      xy[m, 0],
      xy[m, 1],
      s=8,
      color='lightgray',
      alpha=0.7,
      label=f'others ({len(others)} classes, {int(m.sum())} crops)',
    )
  cmap = plt.get_cmap('tab10' if len(shown) <= 10 else 'tab20')
  for i, c in enumerate(shown):
    m = labels == c
    ax.scatter(
      xy[m, 0],
      xy[m, 1],
      s=14,
      color=cmap(i % cmap.N),
      alpha=0.85,
      label=f'{_class_name(class_names, c)} ({counts[c]})',
    )
  heading = (
    f'{len(ranked)} classes'
    if not others
    else f'the {len(shown)} largest of {len(ranked)} classes in colour'
  )
  _titled(ax, f'PCA of the L2-normalised embeddings ({heading})', backbone, run)
  ax.set_xlabel(f'principal component 1 ({ratios[0]:.0%} of the variance)')
  ax.set_ylabel(f'principal component 2 ({ratios[1]:.0%} of the variance)')
  ax.set_xticks([])
  ax.set_yticks([])
  ax.legend(
    loc='upper left',
    bbox_to_anchor=(1.01, 1.0),
    fontsize=7,
    title='class (crops)',
    title_fontsize=8,
    markerscale=1.5,
  )
  return fig


def embedding_map(
  features: np.ndarray,
  labels: np.ndarray,
  path: str,
  class_names=None,
  max_classes: int = 10,
  *,
  backbone: str = '',
  run: str | None = None,
) -> str:
  """2-D PCA of the normalised embeddings, one dot per crop.

  With up to `max_classes` classes each has its colour and legend entry;
  with more, the `max_classes` largest do and the rest are grey 'others'.
  """
  fig = embedding_map_figure(
    features, labels, class_names, max_classes, backbone=backbone, run=run
  )
  return _save(fig, path)


# --------------------------------------------------------------------------
# Confusion matrix.


def confusion_matrix_figure(
  confusion: np.ndarray,
  *,
  labels=None,
  class_names=None,
  head: str = '',
  split: str = '',
  backbone: str = '',
  run: str | None = None,
  accuracy: float | None = None,
  max_named: int = MAX_NAMED_CLASSES,
):
  """The figure of `confusion_matrix`."""
  confusion = np.asarray(confusion)
  rows = confusion.sum(1, keepdims=True)
  fig, ax = plt.subplots(figsize=(7, 6))
  im = ax.imshow(confusion / np.maximum(rows, 1), cmap='Blues', vmin=0, vmax=1)
  fig.colorbar(im, ax=ax, shrink=0.8, label='fraction of the true class')
  classes = np.arange(len(confusion)) if labels is None else np.asarray(labels)
  named = _class_ticks(ax, classes, class_names, max_named)
  if not named:
    _index_note(fig, len(classes), class_names)
  what = 'Confusion matrix'
  if head:
    what += f', {HEAD_NAMES.get(head, head)} head'
  if split:
    what += f', {SPLIT_NAMES.get(split, split)} split'
  tested = int(confusion.sum())
  what += f' ({tested} test crops'
  what += f', accuracy {100 * accuracy:.1f} %)' if accuracy is not None else ')'
  _titled(ax, what, backbone, run)
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  return fig


def confusion_matrix(
  confusion: np.ndarray,
  path: str,
  *,
  labels=None,
  class_names=None,
  head: str = '',
  split: str = '',
  backbone: str = '',
  run: str | None = None,
  accuracy: float | None = None,
) -> str:
  """Row-normalised confusion matrix (true class down, predicted across).

  `labels`: the class label of each row/column (`classifiers`' 'labels'),
  used to name them with `class_names`.
  """
  fig = confusion_matrix_figure(
    confusion,
    labels=labels,
    class_names=class_names,
    head=head,
    split=split,
    backbone=backbone,
    run=run,
    accuracy=accuracy,
  )
  return _save(fig, path)
