"""Checks of a run's config before any mode runs.

A wrong value fails in seconds, with a message naming the key and the value
(`config.batch_size=0: must be a positive integer.`), instead of after data
generation or hours of pre-training. Values of the wrong type given on the
command line (`--config.batch_size=abc`) and unknown keys are already refused
by the flag parser (see main.py); these checks cover what parses but cannot
run, and values set in a config file.
"""

import math
from typing import Sequence

import ml_collections

# Few-label heads and splits that `classifiers.few_label_eval` runs.
HEADS = ('linear', 'mlp', 'svc')
HEAD_SPLITS = ('standard', 'strict')
DATA_SOURCES = ('synthetic', 'manual')

_MISSING = object()


class ConfigError(ValueError):
  """A config value that cannot run; the message names the key and value."""


def _get(config: ml_collections.ConfigDict, key: str):
  node = config
  for part in key.split('.'):
    if (
      not isinstance(node, (ml_collections.ConfigDict, dict))
      or part not in node
    ):
      return _MISSING
    node = node[part]
  return node


def _fail(key: str, value, problem: str):
  raise ConfigError(f'config.{key}={value!r}: {problem}')


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _int(config, key: str, *, minimum: int = 1):
  """The int at `key` (if present) must be >= minimum."""
  value = _get(config, key)
  if value is _MISSING:
    return
  if not _is_int(value):
    _fail(key, value, f'must be an integer, got {type(value).__name__}.')
  if value < minimum:
    _fail(
      key,
      value,
      'must be a positive integer.'
      if minimum == 1
      else f'must be an integer >= {minimum}.',
    )


def _number(config, key: str, *, minimum: float = 0.0):
  value = _get(config, key)
  if value is _MISSING:
    return
  if (
    not isinstance(value, (int, float))
    or isinstance(value, bool)
    or (not math.isfinite(value))
  ):
    _fail(key, value, 'must be a finite number.')
  if value < minimum:
    _fail(key, value, f'must be >= {minimum:g}.')


def _name(config, key: str, valid: Sequence[str], what: str):
  value = _get(config, key)
  if value is not _MISSING and (
    not isinstance(value, str) or value not in valid
  ):
    _fail(key, value, f'unknown {what}; valid: {", ".join(sorted(valid))}.')


def _names(config, key: str, valid: Sequence[str], what: str):
  values = _get(config, key)
  if values is _MISSING:
    return
  if isinstance(values, str) or not isinstance(values, (list, tuple)):
    _fail(
      key,
      values,
      f'must be a list of {what}s; valid: {", ".join(sorted(valid))}.',
    )
  from sspr_jax.evaluate import run as eval_run  # pylint: disable=g-import-not-at-top

  # `--config.evaluate.heads=linear,mlp` arrives as ('linear,mlp',).
  for value in eval_run.names(values):
    if not isinstance(value, str) or value not in valid:
      _fail(
        key,
        values,
        f'unknown {what} {value!r}; valid: {", ".join(sorted(valid))}.',
      )


def check_pretrain(config: ml_collections.ConfigDict) -> None:
  """What mode 'pretrain' needs: names, sizes, the batch over the devices."""
  # pylint: disable=g-import-not-at-top
  from sspr_jax.models import resnet
  from sspr_jax.objectives import registry
  from sspr_jax.train import optim

  _name(config, 'objective', registry.CLASSES, 'objective')
  _name(config, 'model.backbone', resnet.BACKBONES, 'backbone')
  _name(config, 'optimizer.name', optim.OPTIMIZERS, 'optimizer')
  _name(config, 'schedule.name', optim.SCHEDULES, 'schedule')
  _int(config, 'batch_size')
  _int(config, 'input.canvas_size')
  _int(config, 'input.shorter_side', minimum=0)
  from sspr_jax.data import prepare

  _name(config, 'input.dataset', prepare.DATASETS, 'dataset')
  shorter, canvas = (
    _get(config, 'input.shorter_side'),
    _get(config, 'input.canvas_size'),
  )
  if (
    shorter not in (_MISSING, 0) and canvas is not _MISSING and shorter > canvas
  ):
    _fail(
      'input.shorter_side',
      shorter,
      f'larger than config.input.canvas_size={canvas}: the resized crop '
      'must fit its canvas.',
    )
  _int(config, 'input.worker_count', minimum=0)
  _number(config, 'num_epochs')
  _int(config, 'total_steps', minimum=0)
  if not _get(config, 'total_steps') and not _get(config, 'num_epochs'):
    raise ConfigError(
      f'config.num_epochs={_get(config, "num_epochs")!r} and '
      f'config.total_steps={_get(config, "total_steps")!r}: nothing to train; '
      'set one of them > 0.'
    )
  for key in ('log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints'):
    _int(config, key)
  _int(config, 'eval_every_steps', minimum=0)
  if _get(config, 'batch_size') is not _MISSING:
    from sspr_jax.core import mesh

    try:
      mesh.per_process_batch(config.batch_size)
    except ValueError as e:
      raise ConfigError(str(e)) from e
  _int(config, 'moco.shuffle_bn_groups')
  groups = _get(config, 'moco.shuffle_bn_groups')
  batch = _get(config, 'batch_size')
  if _MISSING not in (groups, batch) and batch % groups:
    _fail(
      'moco.shuffle_bn_groups',
      groups,
      f'must divide config.batch_size={batch} (shuffle BN '
      'splits the batch into equal groups).',
    )
  try:
    registry.build_objective(config)  # Its section and settings.
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if _get(config, 'eval_every_steps'):
    check_evaluate(config)


def check_evaluate(config: ml_collections.ConfigDict) -> None:
  """What mode 'evaluate' (and the periodic evaluation) needs."""
  # pylint: disable=g-import-not-at-top
  from sspr_jax.evaluate import gallery
  from sspr_jax.evaluate import run as eval_run

  for key in ('batch_size', 'image_size', 'knn_k', 'head_steps'):
    _int(config, f'evaluate.{key}')
  _names(config, 'evaluate.scores', gallery.SCORES, 'score')
  _names(config, 'evaluate.heads', HEADS, 'head')
  _names(config, 'evaluate.head_splits', HEAD_SPLITS, 'split')
  baselines = _get(config, 'evaluate.baselines')
  if baselines is not _MISSING:
    if isinstance(baselines, str) or not isinstance(baselines, (list, tuple)):
      _fail('evaluate.baselines', baselines, 'must be a list of baselines.')
    for baseline in eval_run.names(baselines):
      try:
        eval_run._parse_baseline(baseline)  # pylint: disable=protected-access
      except ValueError as e:
        _fail('evaluate.baselines', list(baselines), str(e))


def check(config: ml_collections.ConfigDict, modes: Sequence[str]) -> None:
  """Raises ConfigError (a ValueError) for a value that `modes` cannot run."""
  _name(config, 'data.source', DATA_SOURCES, 'data source')
  if 'pretrain' in modes:
    check_pretrain(config)
  if 'evaluate' in modes:
    check_evaluate(config)
