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


def table(results: list[dict], columns) -> str:
  """Markdown table: a row per backbone, a column per metric key (in %)."""
  lines = [
    '| model | ' + ' | '.join(columns) + ' |',
    '|---|' + '---|' * len(columns),
  ]
  for r in results:
    cells = [
      f'{100 * r["metrics"][c]:.2f}' if c in r['metrics'] else '-'
      for c in columns
    ]
    lines.append(f'| {r["name"]} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def backbone_figures(
  emb: dict, class_names, details: dict, head: str | None, out_dir: str, name
) -> list[tuple[str, str]]:
  """(title, path) of the figures of one backbone's embeddings and heads."""
  figures = [
    (
      f'Class similarity, {name}',
      plots.class_similarity(
        emb['features'],
        emb['label'],
        os.path.join(out_dir, 'class_similarity.png'),
        class_names,
      ),
    ),
    (
      f'Embedding map, {name}',
      plots.embedding_map(
        emb['features'],
        emb['label'],
        os.path.join(out_dir, 'embedding_map.png'),
      ),
    ),
  ]
  for split, result in details.items():
    if head in result and 'confusion' in result[head]:
      figures.append(
        (
          f'Confusion matrix, {head} head, {split} split, {name}',
          plots.confusion_matrix(
            np.asarray(result[head]['confusion']),
            os.path.join(out_dir, f'confusion_{split}_{head}.png'),
          ),
        )
      )
  return figures


def write(workdir: str, results: list[dict], columns, figures) -> str:
  """Writes WORKDIR/metrics.json and report.md; returns the report text."""
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
  return text
