"""Sweep files: the runs they define, their names, commands and checks.

A sweep file (configs/sweeps/*.py) has `get_sweep()` returning
`(base, runs)` or `(base, runs, fixed)`: `base` a config spec as main.py's
--config takes it ('configs/quickstart.py:moco'), `runs` a list of override
dicts {field path: value} (`configs.common.grid` builds products), `fixed`
overrides applied to every run and left out of the names. The key `config`
in a run replaces the base spec for that run.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shlex
import sys

from absl import flags

import sspr_jax
from sspr_jax import modes
from sspr_jax.core import config_check

# Characters kept in run names (they are folder names, and
# config.checkpoints splits on commas).
_UNSAFE = re.compile(r'[^A-Za-z0-9._=+-]')


@dataclasses.dataclass(frozen=True)
class Run:
  name: str  # its folder under the sweep root
  config: str  # the config spec, as --config takes it
  overrides: dict  # what makes this run (its name)
  args: tuple[str, ...]  # every --config.k=v of its command

  def command(
    self, workdir: str, python: str = 'python', main: str = 'main.py'
  ) -> list[str]:
    """The main.py command line of this run into `workdir` (argv)."""
    return [python, main, '--config', self.config, '--workdir', workdir] + list(
      self.args
    )


def flag_value(value) -> str:
  """`value` as ml-collections parses it back from --config.k=<value>."""
  if isinstance(value, (list, tuple)):
    return repr(tuple(value))
  return value if isinstance(value, str) else repr(value)


def override_args(overrides: dict) -> list[str]:
  return [f'--config.{k}={flag_value(v)}' for k, v in overrides.items()]


def _name_part(key: str, value) -> str:
  if key == 'config':  # 'configs/quickstart.py:moco' -> 'moco'
    path, _, arg = str(value).partition(':')
    return arg or os.path.splitext(os.path.basename(path))[0]
  if isinstance(value, (list, tuple)):
    value = '-'.join(str(v) for v in value)
  return f'{key}={value}'


def run_name(overrides: dict) -> str:
  """'batch_size=64', 'moco+num_epochs=16': a run's folder name."""
  parts = [_name_part(k, v) for k, v in overrides.items()]
  return _UNSAFE.sub('_', '+'.join(parts)) or 'base'


def load_module(path: str):
  if not os.path.isfile(path):
    raise config_check.ConfigError(f'No sweep file {path!r}.')
  # Sweep files import configs.common, as config files do from main.py.
  root = os.path.dirname(os.path.dirname(os.path.abspath(sspr_jax.__file__)))
  if root not in sys.path:
    sys.path.append(root)
  module_spec = importlib.util.spec_from_file_location('_sweep', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise config_check.ConfigError(f'{path} has no get_sweep().')
  return module


def _config_path(config: str, sweep_path: str) -> str:
  """A sweep's config path ('FILE[:ARG]') as found from any folder: as
  given, else under the repository, else beside the sweep file."""
  file, colon, arg = config.partition(':')
  if os.path.isabs(file) or os.path.exists(file):
    return config
  repo = os.path.dirname(os.path.dirname(os.path.abspath(sspr_jax.__file__)))
  for folder in (repo, os.path.dirname(os.path.abspath(sweep_path))):
    if os.path.exists(os.path.join(folder, file)):
      return os.path.join(folder, file) + colon + arg
  return config  # Named as given by the config check.


def load(path: str, extra_args=()) -> list[Run]:
  """The runs of the sweep file at `path`.

  `extra_args`: --config.k=v applied to every run (e.g. where the data is),
  after `fixed`; they may not set a key that the runs sweep over.
  """
  sweep = load_module(path).get_sweep()
  if not (
    isinstance(sweep, (tuple, list))
    and len(sweep) in (2, 3)
    and isinstance(sweep[0], str)
    and isinstance(sweep[1], (tuple, list))
    and all(isinstance(r, dict) for r in sweep[1])
    and (len(sweep) == 2 or isinstance(sweep[2], dict))
  ):
    raise config_check.ConfigError(
      f'{path}: get_sweep() must return (base config path, [dict of '
      f'overrides per run][, dict of fixed overrides]), got '
      f'{type(sweep).__name__} {str(sweep)[:80]}.'
    )
  base, runs, fixed = (tuple(sweep) + ({},))[:3]
  base = _config_path(base, path)
  swept = {k for run in runs for k in run}
  for arg in extra_args:
    key = arg.split('=', 1)[0]
    if not key.startswith('--config.') or '=' not in arg:
      raise config_check.ConfigError(
        f'{arg!r}: extra arguments are --config.<key>=<value> overrides.'
      )
    if key[len('--config.') :] in swept:
      raise config_check.ConfigError(
        f'{arg}: {path} sweeps over this key; it cannot be fixed for all runs.'
      )
  result = []
  for overrides in runs:
    overrides = dict(overrides)
    config = _config_path(overrides.pop('config', base), path)
    name = run_name(({'config': config} if config != base else {}) | overrides)
    args = override_args(fixed) + list(extra_args) + override_args(overrides)
    result.append(Run(name, config, overrides, tuple(args)))
  names = [r.name for r in result]
  duplicated = sorted({n for n in names if names.count(n) > 1})
  if duplicated:
    raise config_check.ConfigError(
      f'{path}: several runs are named {", ".join(duplicated)}; the runs '
      'must differ in their overrides.'
    )
  return result


def command_line(run: Run, root: str) -> str:
  """The shell command of `run` into ROOT/<name>, for a cluster scheduler
  (main.py by its full path unless it is in the current folder)."""
  main = 'main.py'
  if not os.path.isfile(main):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(sspr_jax.__file__)))
    main = os.path.join(repo, main)
  return shlex.join(run.command(os.path.join(root, run.name), main=main))


def resolve(run: Run):
  """The run's config, parsed as main.py parses its command line.

  Raises:
    config_check.ConfigError: one line naming the run and the key.
  """
  try:
    return config_check.parse_config_file(run.config, run.args)
  except (AttributeError, KeyError) as e:  # An unknown key.
    base = config_check.parse_config_file(run.config)
    unknown = config_check.unknown_overrides(base, run.args)
    what = (
      'unknown config key {!r} ({})'.format(*unknown[0])
      if unknown
      else ' '.join(str(e).split())
    )
    raise config_check.ConfigError(f'Run {run.name!r}: {what}.') from e
  except flags.Error as e:  # A value of the wrong type.
    raise config_check.ConfigError(
      f'Run {run.name!r}: {" ".join(str(e).split())}'
    ) from e


def check(runs: list[Run]) -> list:
  """Every run's config, each checked by its modes as main.py checks it.

  Raises:
    config_check.ConfigError: at the first bad run, one line naming it.
  """
  configs = []
  for run in runs:
    config = resolve(run)
    try:
      modes.parse(config)
    except config_check.ConfigError as e:
      raise config_check.ConfigError(
        f'Run {run.name!r}: {" ".join(str(e).split())}'
      ) from e
    configs.append(config)
  return configs
