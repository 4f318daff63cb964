"""Registry: `config.mode` -> the function that runs it.

Modules are imported lazily so that a light mode (e.g. preparing data) does
not pay for importing the training stack.
"""

import importlib
from typing import Any, Callable

from sspr_jax import config_check

_MODES = {
  'prepare_data': 'sspr_jax.data.prepare:run',
  'pretrain': 'sspr_jax.train.pretrain:run',
  'evaluate': 'sspr_jax.evaluate.run:run',
}


def get(mode: str) -> Callable[[Any, str], Any]:
  """Returns the `run(config, workdir)` function registered for `mode`."""
  if mode not in _MODES:
    raise config_check.ConfigError(
      f'Unknown config.mode {mode!r}; valid modes: {", ".join(sorted(_MODES))}.'
    )
  module, fn = _MODES[mode].split(':')
  return getattr(importlib.import_module(module), fn)


def run(config, workdir: str):
  """Runs `config.mode`; 'a,b' runs mode a, then mode b, on the same workdir."""
  if 'mode' not in config:
    raise config_check.ConfigError(
      'The config has no `mode` field; valid modes: '
      f'{", ".join(sorted(_MODES))}.'
    )
  names = [m.strip() for m in config.mode.split(',')]
  runs = [get(m) for m in names]  # Check all first,
  config_check.check(config, names)  # and the config, before any runs.
  return [fn(config, workdir) for fn in runs][-1]
