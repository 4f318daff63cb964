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
import functools
import logging
import os
import time

import jax
import ml_collections

from sspr_jax.core import config_check
from sspr_jax.core import metrics as metrics_lib
from sspr_jax.core import results as results_lib
from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.evaluate import evaluators as evaluators_lib
from sspr_jax.evaluate import report
from sspr_jax.models import backbones
from sspr_jax.modes import common
from sspr_jax.modes import outputs

DEFAULT_EVALUATORS = ('gallery_map', 'knn', 'few_label')


@dataclasses.dataclass(frozen=True)
class Settings:
  checkpoints: tuple[str, ...]  # given paths (checked); () = WORKDIR
  all_steps: bool
  baselines: tuple[backbone_names.Name, ...]
  gallery_data: ml_collections.ConfigDict  # config.data with config.dataset
  evaluators: tuple[str, ...]
  scoring: evaluators_lib.Settings
  architecture: dict  # of the random baseline when no checkpoint is given
  seed: int = 0
  # The 'catalogue' evaluator's set (config.data with it applied), or None.
  catalogue_data: ml_collections.ConfigDict | None = None
  config: ml_collections.ConfigDict | None = None  # recorded with the result


def parse(config: ml_collections.ConfigDict) -> Settings:
  given = config_check.get(config, 'evaluate.baselines', ())
  baselines = tuple(
    config_check.wrap(
      'evaluate.baselines',
      list(given),
      lambda _, b=b: backbone_names.parse(
        b, kinds=backbone_names.BASELINE_KINDS
      ),
    )
    for b in config_check.names(config, 'evaluate.baselines', None, 'baseline')
  )
  checkpoints = tuple(config_check.split_names(config.get('checkpoints', '')))
  all_steps = bool(config.evaluate.get('all_steps', False))
  for path in checkpoints:  # Given paths must exist before anything runs.
    config_check.wrap('checkpoints', path, _run_name(all_steps))
  model = config.get('model', {})
  evaluators = common.parse_evaluators(
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
    gallery_data=common.gallery_data(config),
    evaluators=evaluators,
    scoring=common.parse_scoring(config),
    architecture=backbones.architecture(model),
    seed=config.get('seed', 0),
    config=config,
    catalogue_data=(
      common.gallery_data(config, catalogue, key='evaluate.catalogue')
      if catalogue
      else None
    ),
  )


def _run_name(all_steps: bool):
  return functools.partial(
    backbone_names.parse, kinds=('run',), all_steps=all_steps
  )


def _plan(settings: Settings, workdir: str) -> list[backbone_names.Name]:
  """The runs to evaluate, with their steps (listed now: a pretrain mode
  before this one has saved more); WORKDIR when no checkpoint is given."""
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
  return [_run_name(settings.all_steps)(p) for p in paths]


def _backbones(settings: Settings, runs):
  """(run dir, Backbone) of every checkpoint asked for, then the baselines.

  The random baseline has the architecture of the first checkpoint (else
  `config.model`'s).
  """
  architecture = None
  for run in runs:
    for step in run.steps:
      logging.info('Loading %s, step %d.', run.run, step)
      backbone = backbone_names.load(run, step)
      architecture = architecture or backbone.architecture
      yield run.run, backbone
  for name in settings.baselines:
    logging.info('Building the %s baseline.', name.text)
    yield (
      'baseline',
      backbone_names.load(
        name,
        architecture=architecture or settings.architecture,
        seed=settings.seed,
      ),
    )


def run(settings: Settings, workdir: str) -> list[dict]:
  runs = _plan(settings, workdir)  # Bad paths fail before the build.
  gallery_ = common.open_gallery(
    settings.gallery_data, workdir, settings.scoring
  )
  if settings.catalogue_data is not None:
    gallery_.catalogue = common.open_gallery(
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
  total = sum(len(r.steps) for r in runs) + len(settings.baselines)
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
    emb = gallery_.embed(backbone)
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
    shown = (runs[0].run, runs[0].steps[-1]) if runs else ('baseline', None)
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
