"""Mode 'evaluate': score pre-trained backbones and baselines on a labeled gallery.

Each backbone (checkpoints of pre-training runs, then the baselines) embeds
the labeled rack crops once; the evaluators of `config.evaluate.evaluators`
score the embeddings (gallery mAP for every score, kNN on the strict origin
split, few-label heads); WORKDIR/report.md, metrics.json and evaluation/
(embeddings .npz, figures) are written by process 0, the figures also as
TensorBoard images in WORKDIR/tensorboard.

Config: `config.checkpoints` (comma-separated pre-training workdirs or step
folders `RUN/checkpoints/STEP`; empty: WORKDIR, or only the baselines when
WORKDIR has no checkpoints), `config.dataset` (the labeled gallery:
'synthetic', a folder of labeled rack photos, a TFDS data dir holding a built
`rack_crops`, or `DATASET:SPLIT` of a labelled dataset such as
`grocery_store:test`; empty: `config.data`'s racks), and `config.evaluate`
(how to score: see configs/common.py). `config.evaluate.catalogue` names a
second labelled set in the same grammar (`grocery_store:iconic`, one
packshot per product) that the 'catalogue' evaluator ranks every gallery
crop against: catalogue-to-shelf recognition.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time

import jax
import ml_collections

from sspr_jax.core import config_check
from sspr_jax.core import metrics as metrics_lib
from sspr_jax.core import results as results_lib
from sspr_jax.data import pipeline
from sspr_jax.data import prepare
from sspr_jax.evaluate import classifiers
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.evaluate import evaluators as evaluators_lib
from sspr_jax.evaluate import gallery
from sspr_jax.evaluate import report
from sspr_jax.models import backbones
from sspr_jax.modes import outputs
from sspr_jax.modes import prepare_data

DEFAULT_EVALUATORS = ('gallery_map', 'knn', 'few_label')
# Datasets `config.dataset` may name as DATASET:SPLIT: the labelled ones.
LABELLED_DATASETS = ('rack_crops', 'grocery_store')


@dataclasses.dataclass(frozen=True)
class Settings:
  checkpoints: tuple[str, ...]  # given paths (checked); () = WORKDIR
  all_steps: bool
  baselines: tuple[tuple[str, str | None], ...]  # parsed baseline names
  gallery_data: ml_collections.ConfigDict  # config.data with config.dataset
  evaluators: tuple[str, ...]
  scoring: evaluators_lib.Settings
  architecture: dict  # of the random baseline when no checkpoint is given
  seed: int = 0
  # The 'catalogue' evaluator's set (config.data with it applied), or None.
  catalogue_data: ml_collections.ConfigDict | None = None
  config: ml_collections.ConfigDict | None = None  # recorded with the result


def parse_scoring(config: ml_collections.ConfigDict) -> evaluators_lib.Settings:
  """`config.evaluate`'s scoring fields, checked."""
  for key in ('batch_size', 'image_size', 'knn_k'):
    config_check.integer(config, f'evaluate.{key}')
  config_check.integer(config, 'evaluate.head_max_iter', minimum=0)
  ev = config.evaluate
  return evaluators_lib.Settings(
    image_size=ev.image_size,
    batch_size=ev.batch_size,
    scores=config_check.names(
      config, 'evaluate.scores', gallery.SCORES, 'score'
    ),
    knn_k=ev.knn_k,
    heads=config_check.names(
      config, 'evaluate.heads', classifiers.HEADS, 'head'
    ),
    head_splits=config_check.names(
      config, 'evaluate.head_splits', classifiers.SPLITS, 'split'
    ),
    head_preset=config_check.name(
      config, 'evaluate.head_preset', classifiers.HEAD_PRESETS, 'head preset'
    ),
    head_max_iter=ev.head_max_iter,
  )


def parse_evaluators(config, key: str, default) -> tuple[str, ...]:
  if config_check.get(config, key) is config_check.MISSING:
    return tuple(default)
  return config_check.names(config, key, evaluators_lib.EVALUATORS, 'evaluator')


def gallery_data(
  config: ml_collections.ConfigDict,
  dataset: str | None = None,
  key: str = 'dataset',
) -> ml_collections.ConfigDict:
  """`config.data` with `config.dataset` (or `dataset`, if given) applied.

  'synthetic': the embedded rack photos; a folder holding a built
  `rack_crops/` dataset: that TFDS data dir; any other folder: labeled rack
  photos (Pascal VOC XML + photos, or class folders) to build from. `key`
  names the config key in the error of a missing folder.
  """
  data = prepare_data.parse_data(config)
  if dataset is None:
    dataset = config.get('dataset') or ''
  if not dataset:
    return data
  name, sep, split = dataset.partition(':')
  if sep and name in LABELLED_DATASETS:
    if not split or not split.replace('_', '').isalnum():
      raise config_check.ConfigError(
        f'config.{key}={dataset!r}: name a split after the colon, e.g. '
        f'{name}:test.'
      )
    manual_key = f'data.{name}_manual_dir'
    if name != 'rack_crops' and not config_check.get(config, manual_key, ''):
      raise config_check.ConfigError(
        f'config.{key}={dataset!r} needs config.{manual_key} (the raw '
        f'{name} folder).'
      )
    data.gallery_dataset, data.gallery_split = name, split
    return data
  if dataset == 'synthetic':
    data.source = 'synthetic'
    return data
  path = os.path.abspath(os.path.expanduser(dataset))
  if not os.path.isdir(path):
    raise config_check.ConfigError(
      f"config.{key}={dataset!r}: no such folder (valid: 'synthetic', a "
      'folder of labeled rack photos, or a TFDS data dir with rack_crops/).'
    )
  data.source = 'manual'
  if os.path.isdir(os.path.join(path, 'rack_crops')):
    data.data_dir = path
    data.rack_manual_dir = data.rack_manual_dir or path
  else:
    data.rack_manual_dir = path
  return data


def open_gallery(
  data: ml_collections.ConfigDict,
  workdir: str,
  scoring: evaluators_lib.Settings,
) -> evaluators_lib.Gallery:
  """The labeled gallery of `data` (default `rack_crops` train), built
  first if needed."""
  name = data.get('gallery_dataset', 'rack_crops')
  split = data.get('gallery_split', 'train')
  prepare.build_datasets(data, workdir, which=(name,))
  data_dir = prepare.data_dir(data, workdir)
  source = pipeline.open_source(
    name,
    split=split,
    data_dir=data_dir,
    config=prepare.dataset_config(data, name),
  )
  if len(source) == 0:
    raise ValueError(
      f'The labeled gallery {name}:{split} in {data_dir} has no crops: check '
      'the photos and their annotations (data_summary).'
    )
  class_names = [str(n) for n in source.dataset_info.features['label'].names]
  return evaluators_lib.Gallery(source, scoring, class_names)


def parse(config: ml_collections.ConfigDict) -> Settings:
  given = config_check.get(config, 'evaluate.baselines', ())
  baselines = tuple(
    config_check.wrap(
      'evaluate.baselines',
      list(given),
      lambda _, b=b: embed_lib.parse_baseline(b),
    )
    for b in config_check.names(config, 'evaluate.baselines', None, 'baseline')
  )
  checkpoints = tuple(config_check.split_names(config.get('checkpoints', '')))
  all_steps = bool(config.evaluate.get('all_steps', False))
  for path in checkpoints:  # Given paths must exist before anything runs.
    config_check.wrap(
      'checkpoints', path, lambda p: embed_lib.run_and_steps(p, all_steps)
    )
  model = config.get('model', {})
  evaluators = parse_evaluators(
    config, 'evaluate.evaluators', DEFAULT_EVALUATORS
  )
  catalogue = config_check.get(config, 'evaluate.catalogue', '') or ''
  if 'catalogue' in evaluators and not catalogue:
    raise config_check.ConfigError(
      "The 'catalogue' evaluator needs config.evaluate.catalogue, the "
      "catalogue set (e.g. 'grocery_store:iconic')."
    )
  return Settings(
    checkpoints=checkpoints,
    all_steps=all_steps,
    baselines=baselines,
    gallery_data=gallery_data(config),
    evaluators=evaluators,
    scoring=parse_scoring(config),
    architecture=backbones.architecture(model),
    seed=config.get('seed', 0),
    config=config,
    catalogue_data=(
      gallery_data(config, catalogue, key='evaluate.catalogue')
      if catalogue
      else None
    ),
  )


def _plan(settings: Settings, workdir: str) -> list[tuple[str, list[int]]]:
  """[(run dir, steps)] to evaluate; WORKDIR when no checkpoint is given."""
  paths = list(settings.checkpoints)
  if not paths:
    if os.path.isdir(os.path.join(workdir, 'checkpoints')):
      paths = [workdir]
    elif settings.baselines:
      logging.warning(
        'No checkpoints given and none in %s: evaluating the baselines only.',
        workdir,
      )
    else:
      raise ValueError(
        'Nothing to evaluate: config.checkpoints is empty, '
        f'{workdir!r} has no checkpoints and config.evaluate.baselines is '
        'empty.'
      )
  return [embed_lib.run_and_steps(p, settings.all_steps) for p in paths]


def _backbones(settings: Settings, runs):
  """(run dir, Backbone) of every checkpoint asked for, then the baselines.

  The random baseline has the architecture of the first checkpoint (else
  `config.model`'s).
  """
  architecture = None
  for run_dir, steps in runs:
    for step in steps:
      logging.info('Loading %s, step %d.', run_dir, step)
      backbone = embed_lib.load_backbone(run_dir, step)
      architecture = architecture or backbone.architecture
      yield run_dir, backbone
  for kind, arg in settings.baselines:
    logging.info('Building the %s baseline.', kind)
    yield (
      'baseline',
      embed_lib.baseline_backbone(
        kind, arg, architecture or settings.architecture, settings.seed
      ),
    )


def run(settings: Settings, workdir: str) -> list[dict]:
  runs = _plan(settings, workdir)  # Bad paths fail before the build.
  gallery_ = open_gallery(settings.gallery_data, workdir, settings.scoring)
  if settings.catalogue_data is not None:
    gallery_.catalogue = open_gallery(
      settings.catalogue_data, workdir, settings.scoring
    )
  # Every process computes the same metrics; process 0 writes the files,
  # staged: the previous result stays whole until this one is (core.results).
  writes = jax.process_index() == 0
  stage = results_lib.Staging(
    workdir, 'evaluate', settings.config, owned=('evaluation',)
  )
  with stage if writes else contextlib.nullcontext():
    results = _evaluate(settings, runs, gallery_, stage if writes else None)
  outputs.print_wrote(written(workdir))
  return results


def _evaluate(settings, runs, gallery_, stage) -> list[dict]:
  """Every backbone's metrics; with a `stage`, its files staged there."""
  writes = stage is not None
  out_dir = stage.path('evaluation') if writes else None
  if writes:
    os.makedirs(out_dir, exist_ok=True)
  results, figures, columns = [], [], []
  total = sum(len(steps) for _, steps in runs) + len(settings.baselines)
  for i, (run_dir, backbone) in enumerate(_backbones(settings, runs)):
    logging.info('Evaluating %s (%d/%d).', backbone.name, i + 1, total)
    evaluators = evaluators_lib.build(
      settings.evaluators,
      gallery_,
      backbone.module,
      backbone.normalize,
      backbone.name,
    )
    # Embedded once here, timed apart; the evaluators reuse the embeddings.
    start = time.perf_counter()
    emb = gallery_.embeddings(
      backbone.module, backbone.variables, backbone.normalize, backbone.name
    )
    logging.info(
      '%s: embedded %d crops in %.1f s.',
      backbone.name,
      len(emb['features']),
      time.perf_counter() - start,
    )
    metrics = {}
    for evaluator in evaluators:
      start = time.perf_counter()
      metrics.update(evaluator.run(backbone.variables))
      columns += [c for c in evaluator.columns if c not in columns]
      logging.info(
        '%s: %s in %.1f s.',
        backbone.name,
        evaluator.name,
        time.perf_counter() - start,
      )
    slug = f'{i:02d}_' + ''.join(
      c if c.isalnum() else '_' for c in backbone.name
    )
    if writes:
      embed_lib.save(
        os.path.join(out_dir, f'{slug}.npz'), emb, gallery_.class_names
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
    results_lib.fault_point('evaluate:first_backbone')
    for key, value in metrics.items():
      if key.startswith('full_map/'):
        logging.info('%s: %s %.4f', backbone.name, key, value)
        break
    # Figures of the first run's latest checkpoint (or the first baseline).
    shown = (runs[0][0], runs[0][1][-1]) if runs else ('baseline', None)
    if writes and not figures and (run_dir, backbone.step) == shown:
      details = next(
        (e.details for e in evaluators if e.name == 'few_label'), {}
      )
      heads = settings.scoring.heads
      logging.info(
        'Plotting the figures of %s into %s.', backbone.name, out_dir
      )
      start = time.perf_counter()
      figures += report.backbone_figures(
        emb,
        gallery_.class_names,
        details,
        heads[-1] if heads else None,
        out_dir,
        backbone.name,
        run_dir,
      )
      logging.info('Plotted in %.1f s.', time.perf_counter() - start)
  if writes:
    logging.info('Writing the report (and the mAP-per-step figure).')
    # The figures also go to WORKDIR/tensorboard as images.
    writer = metrics_lib.MetricsWriter(stage.folder, jsonl=False)
    try:
      print(report.write(stage.root, results, columns, figures, writer=writer))
    finally:
      writer.close()
  results_lib.fault_point('evaluate:written')
  return results


def written(workdir: str) -> list[tuple[str, str, str]]:
  """(what, path, note) of the evaluate mode's outputs in WORKDIR."""
  return [
    ('report.md', os.path.join(workdir, 'report.md'), ''),
    ('metrics.json', os.path.join(workdir, 'metrics.json'), ''),
    (
      'evaluation/',
      os.path.join(workdir, 'evaluation'),
      'embeddings .npz, figures .png',
    ),
    ('tensorboard/', os.path.join(workdir, 'tensorboard'), 'figures'),
  ]
