"""PNG figures for the evaluation report (matplotlib, no display needed)."""

import collections
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from sklearn.decomposition import PCA

from sspr_jax.core import metrics as metrics_lib
from sspr_jax.core import ops


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def scores_over_steps(
  results: list[dict], path: str, metric: str = 'full_map/cosine'
) -> str | None:
  """`metric` per checkpoint step for each run, as the thesis plotted its logs.

  Uses the evaluated checkpoints in `results` and, where a run logged them,
  the periodic `eval/<metric>` values in its metrics.jsonl.
  """
  series = collections.defaultdict(dict)
  baselines = {}
  for r in results:
    if r.get('step') is None:
      baselines[r['name']] = r['metrics'][metric]
      continue
    series[r['run']][r['step']] = r['metrics'][metric]
    try:
      for record in metrics_lib.read_metrics(r['run']):
        if f'eval/{metric}' in record:
          series[r['run']].setdefault(record['step'], record[f'eval/{metric}'])
    except FileNotFoundError:
      pass
  if not any(len(s) > 0 for s in series.values()):
    return None
  fig, ax = plt.subplots(figsize=(6, 4))
  for run, points in series.items():
    steps = sorted(points)
    ax.plot(
      steps,
      [100 * points[s] for s in steps],
      marker='o',
      label=os.path.basename(os.path.normpath(run)),
    )
  for name, value in baselines.items():
    ax.axhline(100 * value, linestyle='--', color='gray')
    ax.annotate(
      name,
      (ax.get_xlim()[0], 100 * value),
      fontsize=8,
      color='gray',
      va='bottom',
    )
  ax.set_xlabel('pre-training step')
  ax.set_ylabel(f'{metric} (%)')
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  return _save(fig, path)


def class_similarity(
  features: np.ndarray,
  labels: np.ndarray,
  path: str,
  class_names=None,
  max_classes: int = 60,
) -> str:
  """Cosine similarity of the class-mean embeddings (first `max_classes`)."""
  classes = np.unique(labels)[:max_classes]
  x = ops.l2_normalize(features)
  means = np.stack([x[labels == c].mean(0) for c in classes])
  means = ops.l2_normalize(means)
  sim = means @ means.T
  fig, ax = plt.subplots(figsize=(7, 6))
  im = ax.imshow(sim, cmap='viridis', vmin=min(0.0, sim.min()), vmax=1.0)
  fig.colorbar(im, ax=ax, shrink=0.8, label='cosine')
  if class_names is not None and len(classes) <= 40:
    names = [str(class_names[c]) for c in classes]
    ax.set_xticks(range(len(classes)), names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(classes)), names, fontsize=6)
  ax.set_title('class-mean embedding similarity')
  return _save(fig, path)


def embedding_map(
  features: np.ndarray, labels: np.ndarray, path: str, max_classes: int = 20
) -> str:
  """2-D PCA of the normalised embeddings, the `max_classes` largest classes."""
  x = ops.l2_normalize(features)
  xy = PCA(n_components=2, random_state=0).fit_transform(x)
  counts = collections.Counter(labels.tolist())
  shown = [c for c, _ in counts.most_common(max_classes)]
  fig, ax = plt.subplots(figsize=(6, 5))
  cmap = plt.get_cmap('tab20')
  for i, c in enumerate(shown):
    m = labels == c
    ax.scatter(xy[m, 0], xy[m, 1], s=12, color=cmap(i % 20), alpha=0.8)
  ax.set_title(f'PCA of normalised embeddings ({len(shown)} largest classes)')
  ax.set_xticks([])
  ax.set_yticks([])
  return _save(fig, path)


def confusion_matrix(confusion: np.ndarray, path: str) -> str:
  """Row-normalised confusion matrix (true class down, predicted across)."""
  rows = confusion.sum(1, keepdims=True)
  fig, ax = plt.subplots(figsize=(6, 5))
  im = ax.imshow(confusion / np.maximum(rows, 1), cmap='Blues', vmin=0, vmax=1)
  fig.colorbar(im, ax=ax, shrink=0.8, label='fraction of the true class')
  ax.set_xlabel('predicted class')
  ax.set_ylabel('true class')
  return _save(fig, path)
