"""The evaluation report: one table over backbones, figures, metrics.json."""

import json
import os

import numpy as np

from sspr_jax.evaluate import plots

NOTE = (
  'Values in %. Full-gallery mAP is leave-one-out and class-balanced; '
  "average-gallery mAP ranks each class's first crop against class "
  'prototypes; kNN (cosine, similarity-weighted) trains on the strict origin '
  'split; <split>/<head> are few-label heads grid-searched with 5-fold CV on '
  'the standard 80/20 or the strict origin split (accuracy and 1/rank mAP on '
  'its test part).'
)


def table(results: list[dict], columns, runs=None) -> str:
  """Markdown table: a row per backbone, a column per metric key (in %).

  `runs` (a name per result) adds a first column 'run', for tables over
  several runs (`sspr_jax/sweeps/report.py`).
  """
  first = ['run', 'model'] if runs is not None else ['model']
  lines = [
    '| ' + ' | '.join(first + list(columns)) + ' |',
    '|' + '---|' * (len(first) + len(columns)),
  ]
  for i, r in enumerate(results):
    cells = [
      f'{100 * r["metrics"][c]:.2f}' if c in r['metrics'] else '-'
      for c in columns
    ]
    names = [runs[i], r['name']] if runs is not None else [r['name']]
    lines.append('| ' + ' | '.join(names + cells) + ' |')
  return '\n'.join(lines) + '\n'


def backbone_figures(
  emb: dict,
  class_names,
  details: dict,
  head: str | None,
  out_dir: str,
  name,
  run: str | None = None,
) -> list[tuple[str, str]]:
  """(title, path) of the figures of one backbone's embeddings and heads.

  `name` (e.g. 'simclr step 1088') and `run` (its pre-training run's folder;
  None or 'baseline' for a baseline) title the figures.
  """
  who = dict(backbone=name, run=run)
  figures = [
    (
      f'Class similarity, {name}',
      plots.class_similarity(
        emb['features'],
        emb['label'],
        os.path.join(out_dir, 'class_similarity.png'),
        class_names,
        **who,
      ),
    ),
    (
      f'Embedding map, {name}',
      plots.embedding_map(
        emb['features'],
        emb['label'],
        os.path.join(out_dir, 'embedding_map.png'),
        class_names,
        **who,
      ),
    ),
  ]
  for split, result in details.items():
    if head in result and 'confusion' in result[head]:
      head_result = result[head]
      figures.append(
        (
          f'Confusion matrix, {head} head, {split} split, {name}',
          plots.confusion_matrix(
            np.asarray(head_result['confusion']),
            os.path.join(out_dir, f'confusion_{split}_{head}.png'),
            labels=head_result.get('labels'),
            class_names=class_names,
            head=head,
            split=split,
            accuracy=head_result.get('accuracy'),
            **who,
          ),
        )
      )
  return figures


def log_figures(writer, figures, step: int = 0) -> None:
  """Each (title, PNG path) as a TensorBoard image 'evaluation/<file name>'.

  `writer`: a `core.metrics.MetricsWriter` (its `image`).
  """
  for _, path in figures:
    tag = 'evaluation/' + os.path.splitext(os.path.basename(path))[0]
    writer.image(tag, path, step)


def write(
  workdir: str, results: list[dict], columns, figures, writer=None
) -> str:
  """Writes WORKDIR/metrics.json and report.md; returns the report text.

  With a `writer` (`core.metrics.MetricsWriter`), the figures, the
  mAP-per-checkpoint curve included, are also logged to TensorBoard at the
  first result's step (0 for a baseline).
  """
  curve = plots.scores_over_steps(
    results, os.path.join(workdir, 'evaluation', 'map_over_steps.png')
  )
  if curve:
    figures = [('Full-gallery cosine mAP per checkpoint', curve)] + figures
  with open(os.path.join(workdir, 'metrics.json'), 'w') as f:
    json.dump(results, f, indent=2)
  text = '# Evaluation on rack_crops\n\n' + table(results, columns)
  text += '\n' + NOTE + '\n'
  text += ''.join(
    f'\n## {title}\n\n![{title}]({os.path.relpath(path, workdir)})\n'
    for title, path in figures
  )
  with open(os.path.join(workdir, 'report.md'), 'w') as f:
    f.write(text)
  if writer is not None:
    step = (results[0].get('step') if results else None) or 0
    log_figures(writer, figures, step)
  return text
