"""Builds the crop datasets (the `tfds build` CLI needs TensorFlow; this does not).

  python -m data_builders.build sku110k_crops --manual_dir DIR --data_dir OUT [--config 128]
  python -m data_builders.build rack_crops --manual_dir RACKS --data_dir OUT --encoding png
  python -m data_builders.build image_folder --manual_dir PHOTOS --data_dir OUT --config native
  python -m data_builders.build grocery_store --manual_dir GroceryStoreDataset --data_dir OUT

Prints crops per split and the skipped/clipped counts. Options other than the
config name (`--min_side`, `--no_clip`, `--encoding`, rack_crops'
`--placeholder_pattern REGEX`, ...) make a custom config named after them, so
it never overwrites a standard one.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import re
import sys
from pathlib import Path

import tensorflow_datasets as tfds

from data_builders import crops
from data_builders.grocery_store import GroceryStore
from data_builders.image_folder import ImageFolder
from data_builders.rack_crops import RackCrops
from data_builders.rack_crops import rack_crops_dataset_builder as rack_crops
from data_builders.sku110k_crops import Sku110kCrops

BUILDERS: dict[str, type[crops.CropsBuilder]] = {
  Sku110kCrops.name: Sku110kCrops,
  RackCrops.name: RackCrops,
  ImageFolder.name: ImageFolder,
  GroceryStore.name: GroceryStore,
}


def _option_fields(builder_cls: type[crops.CropsBuilder]) -> tuple[str, ...]:
  """The config fields `--option`s may set for this builder."""
  return type(builder_cls.BUILDER_CONFIGS[0]).option_names()


def _name_part(value) -> str:
  """`value` for a config (directory) name; a regex or path becomes a hash."""
  text = str(value)
  if re.fullmatch(r'[\w.+]+', text):
    return text
  return hashlib.sha1(text.encode()).hexdigest()[:8] if text else 'none'


def make_config(
  name: str,
  config: str | crops.CropsConfig | None = None,
  config_name: str | None = None,
  **options,
) -> crops.CropsConfig:
  """The config `config` of builder `name` with `options` (CropsConfig fields) applied."""
  builder_cls = BUILDERS[name]
  if isinstance(config, crops.CropsConfig):
    base = config
  else:
    by_name = {c.name: c for c in builder_cls.BUILDER_CONFIGS}
    config = config or builder_cls.BUILDER_CONFIGS[0].name
    if config not in by_name:
      raise ValueError(
        f'{name}: unknown config {config!r}; choose one of {sorted(by_name)}'
      )
    base = by_name[config]
  valid = _option_fields(builder_cls)
  unknown = set(options) - set(valid)
  if unknown:
    raise ValueError(
      f'unknown options {sorted(unknown)} for {name}; valid: {valid}'
    )
  changed = {k: v for k, v in options.items() if getattr(base, k) != v}
  if not changed and not config_name:
    return base
  derived = base.name + ''.join(
    f'-{k}_{_name_part(v)}' for k, v in sorted(changed.items())
  )
  return dataclasses.replace(base, name=config_name or derived, **changed)


def build(
  name: str,
  *,
  config: str | crops.CropsConfig | None = None,
  manual_dir,
  data_dir,
  num_workers: int | None = None,
  config_name: str | None = None,
  file_format: str | None = None,
  **options,
) -> crops.CropsBuilder:
  """Builds (or reuses) dataset `name` in `data_dir` from `manual_dir`; returns the builder.

  Args:
    name: 'sku110k_crops', 'rack_crops', 'image_folder' or 'grocery_store'.
    config: a standard config name ('native', '256', '128') or a config object.
    manual_dir: folder with the source photos and annotations (image_folder:
      the images, searched recursively; grocery_store: a clone of
      GroceryStoreDataset).
    data_dir: TFDS data dir to write to.
    num_workers: processes that crop (default: all cores; 0 = inline).
    config_name: name of the custom config made from `options`.
    file_format: 'array_record' (default; what sspr_jax reads) or 'tfrecord'
      (for `as_dataset()` / `tfds.load`; needs TensorFlow).
    **options: config fields overriding the config (shorter_side,
      allow_upscale, min_side, clip, encoding, jpeg_quality, png_compress_level;
      rack_crops also placeholder_pattern).
  """
  if name not in BUILDERS:
    raise ValueError(
      f'unknown dataset {name!r}; choose one of {sorted(BUILDERS)}'
    )
  builder_config = make_config(name, config, config_name, **options)
  builder = BUILDERS[name](
    data_dir=str(data_dir),
    config=builder_config,
    num_workers=num_workers,
    file_format=file_format,
  )
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
  )
  return builder


def summary(builder: tfds.core.DatasetBuilder) -> str:
  """A table of crops per split and the bad-input counts from the metadata."""
  counts = (builder.info.metadata or {}).get('counts', {})
  lines = [
    f'{builder.name}/{builder.builder_config.name} in {builder.data_dir}'
  ]
  for split, split_counts in counts.items():
    written = (
      builder.info.splits[split].num_examples
      if split in builder.info.splits
      else 0
    )
    lines.append(
      f'  {split}: {written} crops from {split_counts.get("photos", 0)} photos'
    )
    lines.extend(
      f'    {key}: {value}'
      for key, value in split_counts.items()
      if value and key not in ('photos', 'crops')
    )
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('name', choices=sorted(BUILDERS))
  parser.add_argument('--manual_dir', required=True, type=Path)
  parser.add_argument('--data_dir', required=True, type=Path)
  parser.add_argument(
    '--config', default=None, help="'native' (default), '256' or '128'"
  )
  parser.add_argument(
    '--config_name', default=None, help='name of a custom config'
  )
  parser.add_argument('--num_workers', type=int, default=None)
  parser.add_argument(
    '--file_format',
    choices=['array_record', 'tfrecord'],
    default=None,
    help="'array_record' (default, read without TensorFlow) or 'tfrecord' "
    '(for as_dataset/tfds.load; needs TensorFlow)',
  )
  parser.add_argument('--shorter_side', type=int)
  parser.add_argument(
    '--upscale',
    dest='allow_upscale',
    action='store_true',
    default=None,
    help='with --shorter_side/--config 128|256, also enlarge smaller crops',
  )
  parser.add_argument('--min_side', type=int)
  parser.add_argument(
    '--no_clip', dest='clip', action='store_false', default=None
  )
  parser.add_argument('--encoding', choices=['jpeg', 'png'])
  parser.add_argument('--jpeg_quality', type=int)
  parser.add_argument('--png_compress_level', type=int)
  parser.add_argument(
    '--placeholder_pattern',
    metavar='REGEX',
    help='rack_crops: leave out boxes and class folders whose name matches '
    f"(re.search; default {rack_crops.DEFAULT_PLACEHOLDER_PATTERN!r}; '' keeps "
    'all)',
  )
  args = vars(parser.parse_args(argv))
  logging.basicConfig(
    level=logging.INFO, format='%(levelname)s %(name)s: %(message)s'
  )
  fields = {f for cls in BUILDERS.values() for f in _option_fields(cls)}
  options = {k: v for k, v in args.items() if k in fields and v is not None}
  builder = build(
    args['name'],
    config=args['config'],
    manual_dir=args['manual_dir'],
    data_dir=args['data_dir'],
    num_workers=args['num_workers'],
    config_name=args['config_name'],
    file_format=args['file_format'],
    **options,
  )
  print(summary(builder))
  return 0


if __name__ == '__main__':
  sys.exit(main())
