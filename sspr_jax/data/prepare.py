"""Raw photos -> the `sku110k_crops`, `rack_crops`, `image_folder` and
`grocery_store` datasets.

With `config.data.source='synthetic'` the embedded shelf and rack photos are
generated first (into WORKDIR/raw, once per set of generator settings). The
data dir records the settings its synthetic datasets were built with
(`synthetic.json`); builds into one data dir take turns (a file lock), so
runs can share `config.data.data_dir`.
"""

import contextlib
import fcntl
import json
import os
import pathlib
import shutil

import ml_collections

from sspr_jax.core import config_check


def _settings(data: ml_collections.ConfigDict) -> dict:
  return {
    'seed': data.seed,
    'shelf_photos': dict(data.shelf_photos),
    'rack_photos': data.rack_photos,
    'num_classes': data.num_classes,
  }


def _generate(data: ml_collections.ConfigDict, raw_dir: pathlib.Path):
  """Generates the embedded photos into `raw_dir` unless the same settings
  already did (its `generated.json`, written last)."""
  from data_builders import synthetic  # pylint: disable=g-import-not-at-top

  settings = _settings(data)
  marker = raw_dir / 'generated.json'
  # The builder reads the packed archive, like the real SKU110K download.
  archive_dir = raw_dir / 'sku110k_archive'
  racks_dir = raw_dir / 'racks'
  if not (marker.exists() and json.loads(marker.read_text()) == settings):
    marker.unlink(missing_ok=True)
    shelves_root = synthetic.generate_shelves(
      raw_dir / 'sku110k',
      seed=data.seed,
      photos_per_split=dict(data.shelf_photos),
      num_classes=data.num_classes,
    )
    archive_dir.mkdir(parents=True, exist_ok=True)
    synthetic.pack_archive(shelves_root, archive_dir / 'SKU110K_fixed.tar.gz')
    racks_dir = synthetic.generate_racks(
      raw_dir,
      seed=data.seed,
      num_photos=data.rack_photos,
      num_classes=data.num_classes,
    )
    _write_json(marker, settings)
  return archive_dir, racks_dir


def _write_json(path: pathlib.Path, value) -> None:
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  tmp.write_text(json.dumps(value))
  os.replace(tmp, path)


SYNTHETIC_RECORD = 'synthetic.json'


def _claim_for_synthetic(
  data: ml_collections.ConfigDict, datasets_dir: pathlib.Path, owned: bool
) -> None:
  """Makes `datasets_dir` hold (or ready to hold) the generated datasets of
  `data`'s generator settings, recorded in its `synthetic.json`.

  Datasets of other settings are removed only from a data dir this run
  owns (WORKDIR/tfds); in a shared `config.data.data_dir` they are an error,
  so no run deletes what another built or is reading.
  """
  settings = _settings(data)
  record = datasets_dir / SYNTHETIC_RECORD
  recorded = json.loads(record.read_text()) if record.exists() else None
  if recorded == settings:
    return
  present = [n for n in _GENERATED if (datasets_dir / n).exists()]
  if present and not owned:
    what = (
      f'generator settings {recorded}'
      if recorded is not None
      else 'no record of their generator settings'
    )
    raise config_check.ConfigError(  # One line from main.py.
      f'config.data.data_dir={str(datasets_dir)!r} holds synthetic datasets '
      f"({', '.join(present)}) with {what}, not this run's {settings}: "
      'give runs with other settings another data_dir (a run never deletes '
      'a shared data dir).'
    )
  for name in present:  # This run's own data dir: stale, built again.
    shutil.rmtree(datasets_dir / name)
  datasets_dir.mkdir(parents=True, exist_ok=True)
  _write_json(record, settings)


@contextlib.contextmanager
def _locked(datasets_dir: pathlib.Path):
  """One build at a time per data dir: a second run waits, then reuses."""
  datasets_dir.mkdir(parents=True, exist_ok=True)
  with open(datasets_dir / '.build.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def data_dir(data: ml_collections.ConfigDict, workdir: str) -> pathlib.Path:
  return pathlib.Path(data.data_dir or os.path.join(workdir, 'tfds'))


# Dataset -> (config.data key of its raw folder, key of its TFDS config).
_DATASET_KEYS = {
  'sku110k_crops': ('sku110k_manual_dir', 'sku110k_config'),
  'rack_crops': ('rack_manual_dir', 'rack_config'),
  'image_folder': ('image_folder_dir', 'image_folder_config'),
  'grocery_store': ('grocery_store_manual_dir', 'grocery_store_config'),
}
DATASETS = tuple(_DATASET_KEYS)
SOURCES = ('synthetic', 'manual')
# Datasets the synthetic source generates raw photos for.
_GENERATED = ('sku110k_crops', 'rack_crops')


def dataset_config(data: ml_collections.ConfigDict, name: str) -> str:
  """The TFDS builder config of dataset `name` (stored crop size)."""
  return data.get(_DATASET_KEYS[name][1], 'native')


def manual_dirs(
  data: ml_collections.ConfigDict, workdir: str, which=_GENERATED
) -> dict[str, pathlib.Path]:
  """{dataset: raw folder} for `which`, generating synthetic photos if asked.

  `image_folder` always reads `config.data.image_folder_dir` and
  `grocery_store` `config.data.grocery_store_manual_dir` (a clone of the
  GroceryStoreDataset); the crop datasets read the generated photos
  (source='synthetic') or their `config.data.*_manual_dir` (source='manual').
  """
  if data.source not in SOURCES:
    raise ValueError(
      f'Unknown config.data.source {data.source!r}; valid: '
      "'synthetic', 'manual'."
    )
  dirs = {}
  if data.source == 'synthetic' and any(n in _GENERATED for n in which):
    generated = _generate(data, pathlib.Path(workdir) / 'raw')
    dirs.update(zip(_GENERATED, generated))
  for name in which:
    if name in dirs:
      continue
    key = _DATASET_KEYS[name][0]
    if not data.get(key):
      needs = name if name not in _GENERATED else "config.data.source='manual'"
      raise ValueError(
        f'{needs} needs config.data.{key} (the raw images of {name}).'
      )
    dirs[name] = pathlib.Path(data[key])
  return {name: dirs[name] for name in which}


def build_datasets(
  data: ml_collections.ConfigDict,
  workdir: str,
  which=('sku110k_crops', 'rack_crops'),
) -> dict:
  """Builds (or reuses) the datasets; returns {name: tfds builder}.

  With several JAX processes, process 0 generates and builds while the others
  wait; they then open what it built (on several hosts the data dir must be
  on storage that every host reads).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  from data_builders import build as build_lib  # pylint: disable=g-import-not-at-top

  barrier = f'{",".join(which)} built'
  shared = jax.process_count() > 1
  if shared and jax.process_index() != 0:
    multihost_utils.sync_global_devices(barrier)
  dirs = manual_dirs(data, workdir, which)
  out = data_dir(data, workdir)
  builders = {}
  with _locked(out):
    if data.source == 'synthetic' and any(n in _GENERATED for n in which):
      _claim_for_synthetic(data, out, owned=not data.get('data_dir'))
    for name in which:
      builders[name] = build_lib.build(
        name,
        config=dataset_config(data, name),
        manual_dir=dirs[name],
        data_dir=out,
      )
  if shared and jax.process_index() == 0:
    multihost_utils.sync_global_devices(barrier)
  return builders
