"""Mode 'pretrain': build/open the unlabeled dataset, then train the objective.

The objective is built once, in `parse`; with `config.eval_every_steps` the
evaluators of `config.evaluate.periodic` score the backbone on the labeled
gallery during training (the same objects as the evaluate mode's).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import ml_collections

from sspr_jax.core import config_check
from sspr_jax.core import mesh as mesh_lib
from sspr_jax.core import results
from sspr_jax.data import pipeline
from sspr_jax.data import prepare
from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import evaluators as evaluators_lib
from sspr_jax.models import backbones
from sspr_jax.modes import common
from sspr_jax.modes import outputs
from sspr_jax.objectives import registry
from sspr_jax.train import optim
from sspr_jax.train import trainer

DEFAULT_PERIODIC = ('gallery_map', 'knn')


@dataclasses.dataclass(frozen=True)
class Settings:
  config: ml_collections.ConfigDict  # what the trainer reads
  objective: Any
  data: ml_collections.ConfigDict
  dataset: str
  eval_every_steps: int = 0
  periodic: tuple[str, ...] = ()
  gallery_data: ml_collections.ConfigDict | None = None
  scoring: evaluators_lib.Settings | None = None
  init_from: backbone_names.Name | None = None  # config.model.init_from


def _check_training(config) -> None:
  c = config_check
  c.name(config, 'model.backbone', backbones.NAMES, 'backbone')
  c.name(config, 'optimizer.name', optim.OPTIMIZERS, 'optimizer')
  c.name(config, 'schedule.name', optim.SCHEDULES, 'schedule')
  c.name(config, 'input.dataset', prepare.DATASETS, 'dataset')
  batch = c.integer(config, 'batch_size')
  canvas = c.integer(config, 'input.canvas_size')
  shorter = c.integer(config, 'input.shorter_side', minimum=0)
  if shorter not in (c.MISSING, 0) and canvas is not c.MISSING:
    if shorter > canvas:
      c.fail(
        'input.shorter_side',
        shorter,
        f'larger than config.input.canvas_size={canvas}: the resized crop '
        'must fit its canvas.',
      )
  c.integer(config, 'input.worker_count', minimum=0)
  c.number(config, 'num_epochs')
  c.integer(config, 'total_steps', minimum=0)
  if not c.get(config, 'total_steps', 0) and not c.get(config, 'num_epochs', 0):
    raise c.ConfigError(
      f'config.num_epochs={c.get(config, "num_epochs", None)!r} and '
      f'config.total_steps={c.get(config, "total_steps", None)!r}: nothing '
      'to train; set one of them > 0.'
    )
  for key in ('log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints'):
    c.integer(config, key)
  c.integer(config, 'eval_every_steps', minimum=0)
  shard = c.get(config, 'shard_state', False)
  if not isinstance(shard, bool):
    c.fail('shard_state', shard, 'must be True or False.')
  if batch is not c.MISSING:
    c.wrap('batch_size', batch, mesh_lib.per_process_batch)


def _parse_init_from(config):
  """`config.model.init_from`, parsed, its architecture checked."""
  c = config_check
  value = c.get(config, 'model.init_from', '')
  if not isinstance(value, str):
    c.fail('model.init_from', value, 'must be a string.')
  if not value:
    return None
  parsed = c.wrap(
    'model.init_from',
    value,
    lambda v: backbone_names.parse(v, kinds=('run', 'imagenet')),
  )
  source = c.wrap(
    'model.init_from', value, lambda _: backbone_names.architecture(parsed)
  )
  own = backbones.architecture(config.model)
  defaults = {'width': 0, 'stem': 'imagenet'}
  if dict(defaults, **source) != dict(defaults, **own):
    c.fail(
      'model.init_from',
      value,
      f'is a {_describe(source)}, but config.model is a {_describe(own)}; '
      'set config.model to the same architecture.',
    )
  return parsed


def _describe(architecture: dict) -> str:
  return ' '.join(
    [architecture['backbone']]
    + [
      f'{k}={architecture[k]!r}' for k in ('width', 'stem') if k in architecture
    ]
  )


def parse(config: ml_collections.ConfigDict) -> Settings:
  config_check.name(config, 'objective', registry.CLASSES, 'objective')
  _check_training(config)
  init_from = _parse_init_from(config)
  try:
    objective = registry.build_objective(config)  # Its section and settings.
  except ValueError as e:
    raise config_check.ConfigError(str(e)) from e
  settings = dict(
    config=config,
    objective=objective,
    data=common.parse_data(config),
    dataset=config.input.get('dataset', 'sku110k_crops'),
    init_from=init_from,
  )
  every = config.get('eval_every_steps', 0)
  if every:
    settings.update(
      eval_every_steps=every,
      periodic=common.parse_evaluators(
        config, 'evaluate.periodic', DEFAULT_PERIODIC
      ),
      gallery_data=common.gallery_data(config),
      scoring=common.parse_scoring(config),
    )
  return Settings(**settings)


def run(settings: Settings, workdir: str) -> trainer.TrainState:
  config = settings.config
  prepare.build_datasets(settings.data, workdir, which=(settings.dataset,))
  source = pipeline.open_source(
    settings.dataset,
    split=config.input.split,
    data_dir=prepare.data_dir(settings.data, workdir),
    config=prepare.dataset_config(settings.data, settings.dataset),
  )
  loader = pipeline.pretraining_loader(
    source,
    config.input,
    batch_size=mesh_lib.per_process_batch(config.batch_size),
    seed=config.seed,
  )
  evaluators = []
  if settings.periodic:
    gallery = common.open_gallery(
      settings.gallery_data, workdir, settings.scoring
    )
    evaluators = [
      (evaluator, settings.eval_every_steps)
      for evaluator in evaluators_lib.build(
        settings.periodic, gallery, settings.objective.network.backbone
      )
    ]
  logging.info(
    'Pre-training %s on %d images (%s, %s).',
    config.objective,
    len(source),
    settings.dataset,
    config.input.split,
  )
  batch_spec = loader.batch_spec(config.batch_size)
  # Checkpoints and metrics are written as training goes: the record says
  # incomplete until the last step is saved (core.results).
  writes = jax.process_index() == 0
  if writes:
    results.mark(workdir, 'pretrain', config, complete=False)
  state = trainer.train(
    config,
    workdir,
    objective=settings.objective,
    loader=loader,
    batch_spec=batch_spec,
    num_examples=len(source),
    evaluators=evaluators,
    init_backbone=initial_backbone(settings, batch_spec),
  )
  _, total_steps = trainer.planned_steps(config, len(source))
  if writes and int(jax.device_get(state.step)) >= total_steps:
    results.mark(
      workdir,
      'pretrain',
      config,
      complete=True,
      files=('checkpoints', 'metrics.jsonl', 'tensorboard'),
    )
  outputs.print_wrote(written(workdir))
  return state


def initial_backbone(settings: Settings, batch_spec: dict):
  """The backbone variables `config.model.init_from` names, in the tree
  and shapes of the objective's backbone; None without init_from."""
  if settings.init_from is None:
    return None
  source = backbone_names.load(settings.init_from)
  logging.info('Starting from %s (config.model.init_from).', source.name)
  try:
    return backbones.match_variables(
      dict(source.variables),
      settings.objective.backbone_shapes(batch_spec),
      f'config.model.init_from ({source.name})',
    )
  except ValueError as e:
    raise config_check.ConfigError(str(e)) from None


def written(workdir: str) -> list[tuple[str, str, str]]:
  """(what, path, note) of a pre-training run's outputs in WORKDIR."""
  checkpoints = os.path.join(workdir, 'checkpoints')
  try:
    steps = backbone_names.checkpoint_steps(workdir)
  except FileNotFoundError:
    steps = []
  return [
    (
      'checkpoints/',
      checkpoints,
      f'latest step {steps[-1]}' if steps else 'none saved',
    ),
    ('metrics.jsonl', os.path.join(workdir, 'metrics.jsonl'), ''),
    ('tensorboard/', os.path.join(workdir, 'tensorboard'), ''),
  ]
