"""Modes: `config.mode` -> the module that parses and runs it.

Each mode module has `parse(config) -> Settings` (every value it needs,
checked, with the objects it builds once: objective, plan of checkpoints,
evaluators) and `run(settings, workdir)`. `run` parses every requested mode
before running any, so a bad value of a later mode fails in seconds. Modules
are imported lazily: a light mode does not pay for the training stack.

Modes sit on top: they import train/ and evaluate/, which never import each
other.

A run holds WORKDIR/.lock (`core.workdir_lock`) while its modes run, so the
same command started twice on one workdir refuses at once. Each mode records
its result in WORKDIR/results.json (`core.results`): complete or not, and by
which config. WORKDIR/config.json is written when every mode has finished.
"""

import importlib
import os
import types
from typing import Any

from sspr_jax.core import config_check
from sspr_jax.core import results
from sspr_jax.core import workdir_lock

_MODES = {
  'prepare_data': 'sspr_jax.modes.prepare_data',
  'pretrain': 'sspr_jax.modes.pretrain',
  'evaluate': 'sspr_jax.modes.evaluate',
  'recognize': 'sspr_jax.modes.recognize',
  'export': 'sspr_jax.modes.export',
}


def get(mode: str) -> types.ModuleType:
  """The module (with `parse` and `run`) registered for `mode`."""
  if mode not in _MODES:
    raise config_check.ConfigError(
      f'Unknown config.mode {mode!r}; valid modes: {", ".join(sorted(_MODES))}.'
    )
  return importlib.import_module(_MODES[mode])


def parse(config) -> list[tuple[types.ModuleType, Any]]:
  """[(mode module, its settings)] of `config.mode`, all checked."""
  if 'mode' not in config:
    raise config_check.ConfigError(
      'The config has no `mode` field; valid modes: '
      f'{", ".join(sorted(_MODES))}.'
    )
  modules = [get(m) for m in config_check.split_names(config.mode)]
  return [(module, module.parse(config)) for module in modules]


def _process_index() -> int:
  import jax  # pylint: disable=g-import-not-at-top

  # Not initialised: one process, and no need to start a backend here.
  return jax.process_index() if jax.distributed.is_initialized() else 0


def run(config, workdir: str):
  """Runs `config.mode`; 'a,b' runs mode a, then mode b, on the same workdir.

  Raises:
    workdir_lock.WorkdirInUse: another live run holds `workdir`.
  """
  plan = parse(config)
  with workdir_lock.hold(workdir, _process_index()):
    outcomes = [module.run(settings, workdir) for module, settings in plan]
    # Only beside the results it produced: a killed command leaves the
    # previous config.json (each result's own config is in results.json).
    if _process_index() == 0:
      save_config(config, workdir)
    return outcomes[-1]


def save_config(config, workdir: str) -> str:
  """Writes the resolved config (overrides applied) to WORKDIR/config.json."""
  path = os.path.join(workdir, 'config.json')
  results.write_text(
    path, config.to_json_best_effort(indent=2, sort_keys=True) + '\n'
  )
  return path


def check(config) -> str:
  """The resolved config as JSON, after every mode of it parsed it."""
  names = ', '.join(
    module.__name__.rsplit('.', 1)[-1] for module, _ in parse(config)
  )
  text = config.to_json_best_effort(indent=2, sort_keys=True)
  return f'{text}\nConfig OK for mode(s): {names}.'
