"""What tests share: tiny configs and runs, child processes, paths.

Test modules import from here, never from each other.
"""

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys

import ml_collections

from configs import common
from sspr_jax.data import pipeline
from sspr_jax.objectives import build_objective
from sspr_jax.train import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# XLA:CPU's LLVM passes off: a tiny train step then compiles ~2x faster, and
# the child processes of the integration tests below are mostly compiles.
# Their results are compared only with other children's (at this level);
# the HLO passes, where a program's numerics are decided, still run.
FAST_COMPILE = '--xla_backend_optimization_level=0'


def child_env(**env) -> dict:
  """The environment of a test's child JAX process: this one's, the repo
  importable, FAST_COMPILE added to XLA_FLAGS (and to ``env``'s)."""
  flags = [os.environ.get('XLA_FLAGS', ''), env.pop('XLA_FLAGS', '')]
  flags = ' '.join(f for f in flags + [FAST_COMPILE] if f)
  return dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS=flags, **env)


def tiny_config(objective: str, **overrides) -> ml_collections.ConfigDict:
  c = common.pretrain_config(objective)
  c.model.backbone = 'resnet_tiny'
  c.input.canvas_size = 40
  c.data.sku110k_config = '128'
  c.batch_size = 16
  c.total_steps = 24
  c.log_every_steps = 4
  c.checkpoint_every_steps = 1000
  c.optimizer.update(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-5)
  c.schedule.update(name='constant')
  settings = {
    'rotnet': dict(view_size=32, crop_scale=(0.3, 1.0)),
    'jigsaw': dict(
      num_permutations=8,
      permutation_seed=0,
      grayscale_p=0.66,
      jitter=3,
      tile_dim=32,
    ),
    'moco': dict(
      view_size=32,
      crop_scale=(0.3, 1.0),
      color_strength=0.5,
      blur_p=0.5,
      hidden_dims=(64,),
      out_dim=32,
      queue_size=64,
      momentum=0.9,
      temperature=0.2,
      shuffle_bn_groups=2,
    ),
    'simclr': dict(
      view_size=32,
      crop_scale=(0.3, 1.0),
      color_strength=0.5,
      blur_p=0.5,
      hidden_dims=(64,),
      out_dim=32,
      temperature=0.1,
    ),
  }[objective]
  c[objective] = ml_collections.ConfigDict(settings)
  c.update_from_flattened_dict(overrides)
  return c


class TinyLoader:
  """The pre-training loader; `stop_after` simulates a crash at that batch."""

  def __init__(self, source, config, stop_after=None):
    self._loader = pipeline.pretraining_loader(
      source, config.input, batch_size=config.batch_size, seed=config.seed
    )
    self._stop_after = stop_after

  def batch_spec(self, global_batch):
    return self._loader.batch_spec(global_batch)

  def iter_from(self, start):
    for i, batch in enumerate(self._loader.iter_from(start)):
      if self._stop_after is not None and start + i >= self._stop_after:
        raise KeyboardInterrupt('simulated crash')
      yield batch


def train_tiny(config, workdir, crops, loader=None, objective=None, **kwargs):
  loader = loader or TinyLoader(crops, config)
  return trainer.train(
    config,
    str(workdir),
    objective=objective or build_objective(config),
    loader=loader,
    batch_spec=loader.batch_spec(config.batch_size),
    num_examples=len(crops),
    **kwargs,
  )


def tiny_crops(tiny_datasets):
  """The conftest's `sku110k_crops` train split (stored at 128 px)."""
  return pipeline.open_source(
    'sku110k_crops', split='train', data_dir=tiny_datasets, config='128'
  )


def config_file(tmp_path, objective) -> str:
  """A config file with the tests' tiny settings (main.py reads files)."""
  path = tmp_path / f'tiny_{objective}.py'
  path.write_text(
    'from sspr_jax.testing import tiny_config\n'
    f'def get_config():\n  return tiny_config({objective!r})\n'
  )
  return str(path)


def tiny_data(tiny_raw_data, tiny_datasets) -> dict:
  """`config.data` settings that read the conftest's raw photos and built
  datasets."""
  return dict(
    source='manual',
    data_dir=str(tiny_datasets),
    sku110k_manual_dir=str(tiny_raw_data['archive'].parent),
    rack_manual_dir=str(tiny_raw_data['racks']),
    sku110k_config='128',
    rack_config='native',
  )


def evaluation_config(tiny_raw_data, tiny_datasets, **overrides):
  """A tiny SimCLR config whose evaluate mode reads the conftest's data."""
  config = tiny_config('simclr', **overrides)
  config.data.update(tiny_data(tiny_raw_data, tiny_datasets))
  config.evaluate.image_size = 32
  config.evaluate.batch_size = 16
  config.evaluate.update(dict(heads=('linear',), head_max_iter=20))
  return config


def libtpu_requirement() -> str:
  """The `tpu-aot` extra's pin, e.g. 'libtpu==0.0.42.1'."""
  text = open(os.path.join(REPO, 'pyproject.toml')).read()
  block = re.search(r'tpu-aot = \[(.*?)\]', text, re.S).group(1)
  return re.search(r'"(libtpu==[^;"]+)', block).group(1).strip()


def libtpu_folder() -> str:
  """'' if libtpu is importable here, else a folder holding it (installed
  there once from the `tpu-aot` extra's pin); skips the calling test where
  libtpu is not published."""
  import pytest  # pylint: disable=g-import-not-at-top

  if sys.platform != 'linux' or platform.machine() != 'x86_64':
    pytest.skip('libtpu is published for x86-64 Linux only')
  if importlib.util.find_spec('libtpu') is not None:
    return ''
  requirement = libtpu_requirement()
  folder = os.environ.get('SSPR_LIBTPU_DIR') or os.path.join(
    os.path.expanduser('~'),
    '.cache',
    'sspr_jax',
    requirement.replace('==', '-'),
  )
  if not os.path.isfile(os.path.join(folder, 'libtpu', '__init__.py')):
    partial = folder + '.partial'
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
      [sys.executable, '-m', 'pip', 'install', '-q', '--no-deps']
      + ['--target', partial, requirement],
      check=True,
      timeout=900,
    )
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)  # Whole or absent: never half a library.
  return folder
