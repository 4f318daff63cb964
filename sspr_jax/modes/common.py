"""What several modes parse and open alike: the data, the labelled gallery
and its scoring settings. Modes import this module, never each other."""

from __future__ import annotations

import os

import ml_collections

from sspr_jax.core import config_check
from sspr_jax.data import pipeline
from sspr_jax.data import prepare
from sspr_jax.evaluate import classifiers
from sspr_jax.evaluate import evaluators as evaluators_lib
from sspr_jax.evaluate import gallery

# Datasets `config.dataset` may name as DATASET:SPLIT: the labelled ones.
LABELLED_DATASETS = ('rack_crops', 'grocery_store')


def parse_data(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.data`, checked: the source and the synthetic set sizes."""
  config_check.name(config, 'data.source', prepare.SOURCES, 'data source')
  for key in ('rack_photos', 'num_classes'):
    config_check.integer(config, f'data.{key}')
  for split in config_check.get(config, 'data.shelf_photos', {}):
    config_check.integer(config, f'data.shelf_photos.{split}')
  return ml_collections.ConfigDict(config.data.to_dict())


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
  data = parse_data(config)
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
