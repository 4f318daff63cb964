"""Mode 'evaluate': embed the labeled rack crops with each backbone, then
gallery mAP (full and average, every score) and kNN accuracy on the strict
origin split; writes WORKDIR/metrics.json and WORKDIR/report.md.

Config (`config.evaluate`): checkpoints (comma-separated pre-training
workdirs or checkpoint step folders `RUN/checkpoints/STEP`; empty = WORKDIR,
or only the baselines when WORKDIR has no checkpoints), all_steps (every saved
checkpoint of a workdir, else the latest), baselines ('random',
'imagenet_efficientnet_lite0', 'imagenet_resnet50:/path/to/resnet50.pth'),
image_size, batch_size, scores, knn_k, heads. `config.dataset` (optional, see
configs/evaluate.py) names the labeled gallery: 'synthetic', a folder of
labeled rack photos, or a TFDS data dir holding a built `rack_crops`.
"""

import json
import logging
import os

import jax
import ml_collections
import numpy as np

from sspr_jax.data import pipeline
from sspr_jax.data import prepare
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.evaluate import gallery
from sspr_jax.evaluate import classifiers
from sspr_jax.evaluate import knn
from sspr_jax.evaluate import plots
from sspr_jax.evaluate import splits


def evaluate_embeddings(
  emb: dict,
  scores,
  knn_k: int,
  heads=(),
  head_splits=('standard', 'strict'),
  head_steps=200,
  details: dict | None = None,
) -> dict:
  """Every metric of one backbone's embeddings of the labeled gallery.

  `heads` ('linear', 'mlp', 'svc') are few-label classifiers grid-searched
  with 5-fold CV on each of `head_splits`; their full results (confusion
  matrices, chosen grid points) go into `details` when given.
  """
  metrics = gallery.gallery_metrics(emb['features'], emb['label'], scores)
  for split in head_splits if heads else ():
    result = classifiers.few_label_eval(
      emb['features'],
      emb['label'],
      emb['origin'],
      split=split,
      heads=tuple(heads),
      steps=head_steps,
    )
    metrics.update(result['metrics'])
    if details is not None:
      details[split] = result
  train, test = splits.strict_origin_split(emb['label'], emb['origin'])
  if len(test):
    x = emb['features_normalized']
    metrics['strict_knn_accuracy'] = knn.knn_accuracy(
      x[train],
      emb['label'][train],
      x[test],
      emb['label'][test],
      k=min(knn_k, len(train)),
    )
  metrics['strict_split_sizes'] = [int(len(train)), int(len(test))]
  return {
    k: (v.item() if isinstance(v, np.generic) else v)
    for k, v in metrics.items()
  }


BASELINES_HELP = (
  "'random', 'pixels' (or 'pixels:SIDE', default 16), "
  "'imagenet_efficientnet_lite0', "
  "'imagenet_resnet50:/path/to/resnet50.pth' (also resnet18/34)"
)


def _parse_baseline(baseline: str) -> tuple[str, str | None]:
  """'random' -> ('random', None); 'imagenet_resnet50:/p.pth' ->
  ('resnet50', '/p.pth'); 'imagenet_efficientnet_lite0' -> (kind, None)."""
  if baseline == 'random':
    return 'random', None
  name, _, path = baseline.partition(':')
  if name == 'pixels':
    if path and not (path.isdigit() and int(path) > 0):
      raise ValueError(
        f'Unknown baseline {baseline!r}: the side in pixels:SIDE must be a '
        'positive integer.'
      )
    return 'pixels', path or '16'

  kind = name[len('imagenet_') :] if name.startswith('imagenet_') else None
  if kind not in embed_lib.IMAGENET_KINDS or (
    kind.startswith('resnet') and not path
  ):
    raise ValueError(f'Unknown baseline {baseline!r}; valid: {BASELINES_HELP}.')
  return kind, path or None


def names(value) -> list[str]:
  """'a,b', ('a', 'b') or ('a,b',) -> ['a', 'b'] (blanks dropped).

  ml_collections reads `--config.evaluate.heads=linear,mlp` into the tuple
  ('linear,mlp',); commas inside entries split them too.
  """
  if isinstance(value, str):
    value = (value,)
  return [n.strip() for v in value for n in str(v).split(',') if n.strip()]


def settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.evaluate` with its name lists as lists of names.

  The names themselves are checked by `sspr_jax.config_check` before a mode
  runs.
  """
  ev = ml_collections.ConfigDict(config.evaluate.to_dict(), type_safe=False)
  for key in ('checkpoints', 'baselines', 'scores', 'heads', 'head_splits'):
    ev[key] = names(ev[key])
  return ev


def _run_and_steps(path: str, all_steps: bool) -> tuple[str, list[int]]:
  """A workdir, its checkpoints folder, or one step folder -> (run, steps)."""
  path = os.path.abspath(os.path.expanduser(path))
  name, parent = os.path.basename(path), os.path.dirname(path)
  if name.isdigit() and os.path.basename(parent) == 'checkpoints':
    if not os.path.isdir(path):
      raise FileNotFoundError(f'No checkpoint folder {path!r}.')
    return os.path.dirname(parent), [int(name)]
  if name == 'checkpoints':
    path = parent
  if not os.path.isdir(path):
    raise FileNotFoundError(f'Checkpoint path {path!r} does not exist.')
  steps = embed_lib.checkpoint_steps(path)
  if not steps:
    raise FileNotFoundError(f'No checkpoint in {path!r}/checkpoints.')
  return path, steps if all_steps else steps[-1:]


def _plan(ev, workdir) -> tuple[list, list]:
  """([(run dir, steps)], [(baseline kind, path)]) of `settings(config)`,
  checked before any work."""
  baselines = [_parse_baseline(b) for b in ev.baselines]
  paths = ev.checkpoints
  if not paths:
    if os.path.isdir(os.path.join(workdir, 'checkpoints')):
      paths = [workdir]
    elif baselines:
      logging.warning(
        'No checkpoints given and none in %s: evaluating the baselines only.',
        workdir,
      )
    else:
      raise ValueError(
        'Nothing to evaluate: config.evaluate.checkpoints is '
        f'empty, {workdir!r} has no checkpoints and '
        'config.evaluate.baselines is empty.'
      )
  return [_run_and_steps(p, ev.all_steps) for p in paths], baselines


def _backbones(config, runs, baselines):
  """(run dir, Backbone) of every checkpoint asked for, then the baselines.

  The random baseline has the architecture of the first checkpoint (else
  `config.model.backbone`).
  """
  architecture = None
  for run_dir, steps in runs:
    for step in steps:
      backbone = embed_lib.load_backbone(run_dir, step)
      architecture = architecture or backbone.architecture
      yield run_dir, backbone
  for kind, path in baselines:
    if kind == 'random':
      yield (
        'baseline',
        embed_lib.random_backbone(
          architecture or config.model, seed=config.get('seed', 0)
        ),
      )
    elif kind == 'pixels':
      yield 'baseline', embed_lib.pixels_backbone(int(path))
    else:
      yield 'baseline', embed_lib.imagenet_backbone(kind, path)


def _report(results: list[dict], scores, ev) -> str:
  cols = [f'full_map/{s}' for s in scores] + [
    'average_map/cosine',
    'full_top1/cosine',
    'strict_knn_accuracy',
  ]
  cols += [
    f'{split}/{head}/{m}'
    for head in ev.heads
    for split in ev.head_splits
    for m in ('accuracy', 'map')
  ]
  lines = [
    '# Evaluation on rack_crops',
    '',
    '| model | ' + ' | '.join(cols) + ' |',
    '|---|' + '---|' * len(cols),
  ]
  for r in results:
    cells = [
      f'{100 * r["metrics"][c]:.2f}' if c in r['metrics'] else '-' for c in cols
    ]
    lines.append(f'| {r["name"]} | ' + ' | '.join(cells) + ' |')
  lines += [
    '',
    'Values in %. Full-gallery mAP is leave-one-out and class-'
    "balanced; average-gallery mAP ranks each class's first crop "
    'against class prototypes; kNN (cosine, similarity-weighted) '
    'trains on the strict origin split; <split>/<head> are few-label '
    'heads grid-searched with 5-fold CV on the standard 80/20 or the '
    'strict origin split (accuracy and 1/rank mAP on its test part).',
  ]
  return '\n'.join(lines) + '\n'


def gallery_data(
  config: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """`config.data` with `config.dataset` (if any) applied.

  'synthetic': the embedded rack photos; a folder holding a built
  `rack_crops/` dataset: that TFDS data dir; any other folder: labeled rack
  photos (Pascal VOC XML + photos, or class folders) to build from.
  """
  data = ml_collections.ConfigDict(config.data.to_dict())
  dataset = config.get('dataset') or ''
  if not dataset:
    return data
  if dataset == 'synthetic':
    data.source = 'synthetic'
    return data
  path = os.path.abspath(os.path.expanduser(dataset))
  if not os.path.isdir(path):
    raise FileNotFoundError(
      f"config.dataset={dataset!r}: no such folder (valid: 'synthetic', a "
      'folder of labeled rack photos, or a TFDS data dir with rack_crops/).'
    )
  data.source = 'manual'
  if os.path.isdir(os.path.join(path, 'rack_crops')):
    data.data_dir = path
    data.rack_manual_dir = data.rack_manual_dir or path
  else:
    data.rack_manual_dir = path
  return data


def _rack_source(config, workdir):
  data = gallery_data(config)
  prepare.build_datasets(data, workdir, which=('rack_crops',))
  data_dir = prepare.data_dir(data, workdir)
  source = pipeline.open_source(
    'rack_crops', split='train', data_dir=data_dir, config=data.rack_config
  )
  if len(source) == 0:
    raise ValueError(
      f'The labeled gallery rack_crops in {data_dir} has no '
      'crops: check '
      'the rack photos and their annotations (data_summary).'
    )
  return source


class _PeriodicGallery:
  """Gallery mAP and kNN of the current backbone on the rack crops."""

  def __init__(self, config, workdir, backbone_module):
    self._ev = settings(config)
    self._source = _rack_source(config, workdir)
    self._module = backbone_module

  def run(self, variables) -> dict:
    backbone = embed_lib.Backbone('current', self._module, variables)
    emb = embed_lib.embed(
      backbone,
      self._source,
      image_size=self._ev.image_size,
      batch_size=self._ev.batch_size,
    )
    metrics = evaluate_embeddings(emb, ('cosine',), self._ev.knn_k)
    keep = (
      'full_map/cosine',
      'average_map/cosine',
      'full_top1/cosine',
      'strict_knn_accuracy',
    )
    return {f'eval/{k}': metrics[k] for k in keep if k in metrics}


def periodic_evaluator(
  config: ml_collections.ConfigDict, workdir: str, backbone_module
):
  """An evaluator for the trainer, the same code as the 'evaluate' mode."""
  return _PeriodicGallery(config, workdir, backbone_module)


def run(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  ev = settings(config)
  runs, baselines = _plan(ev, workdir)  # Bad paths fail before the build.
  source = _rack_source(config, workdir)
  scores = tuple(ev.scores)
  class_names = [str(n) for n in source.dataset_info.features['label'].names]
  out_dir = os.path.join(workdir, 'evaluation')
  # Every process computes the same metrics; process 0 writes the files.
  writes = jax.process_index() == 0
  if writes:
    os.makedirs(out_dir, exist_ok=True)
  results, figures = [], []
  for i, (run_dir, backbone) in enumerate(_backbones(config, runs, baselines)):
    emb = embed_lib.embed(
      backbone, source, image_size=ev.image_size, batch_size=ev.batch_size
    )
    slug = f'{i:02d}_' + ''.join(
      c if c.isalnum() else '_' for c in backbone.name
    )
    if writes:
      embed_lib.save(os.path.join(out_dir, f'{slug}.npz'), emb, class_names)
    details = {}
    metrics = evaluate_embeddings(
      emb, scores, ev.knn_k, ev.heads, ev.head_splits, ev.head_steps, details
    )
    results.append(
      {
        'run': run_dir,
        'name': backbone.name,
        'step': backbone.step,
        'metrics': metrics,
        'embeddings': f'evaluation/{slug}.npz',
      }
    )
    logging.info(
      '%s: full-gallery %s mAP %.4f',
      backbone.name,
      scores[0],
      metrics[f'full_map/{scores[0]}'],
    )
    if i == 0 and writes:  # Figures of the first (latest pre-trained) backbone.
      figures.append(
        (
          f'Class similarity, {backbone.name}',
          plots.class_similarity(
            emb['features'],
            emb['label'],
            os.path.join(out_dir, 'class_similarity.png'),
            class_names,
          ),
        )
      )
      figures.append(
        (
          f'Embedding map, {backbone.name}',
          plots.embedding_map(
            emb['features'],
            emb['label'],
            os.path.join(out_dir, 'embedding_map.png'),
          ),
        )
      )
      for split, result in details.items():
        head = ev.heads[-1]
        if head in result and 'confusion' in result[head]:
          figures.append(
            (
              f'Confusion matrix, {head} head, {split} split, {backbone.name}',
              plots.confusion_matrix(
                np.asarray(result[head]['confusion']),
                os.path.join(out_dir, f'confusion_{split}_{head}.png'),
              ),
            )
          )
  if not writes:
    return results
  curve = plots.scores_over_steps(
    results, os.path.join(out_dir, 'map_over_steps.png')
  )
  if curve:
    figures.insert(0, ('Full-gallery cosine mAP per checkpoint', curve))
  with open(os.path.join(workdir, 'metrics.json'), 'w') as f:
    json.dump(results, f, indent=2)
  report = _report(results, scores, ev)
  report += ''.join(
    f'\n## {title}\n\n![{title}]({os.path.relpath(path, workdir)})\n'
    for title, path in figures
  )
  with open(os.path.join(workdir, 'report.md'), 'w') as f:
    f.write(report)
  print(report)
  return results
