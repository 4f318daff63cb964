"""Generic checks of config values, for the modes' `parse(config)`.

A wrong value fails in seconds, with a message naming the key and the value
(`config.batch_size=0: must be a positive integer.`), instead of after data
generation or hours of pre-training. Values of the wrong type given on the
command line (`--config.batch_size=abc`) and unknown keys are already refused
by the flag parser (see main.py); these checks cover what parses but cannot
run, and values set in a config file. Which keys a mode needs, and which
names are valid, is the mode's business (`sspr_jax/modes/`).
"""

import math
from collections.abc import Collection

import ml_collections

MISSING = object()


class ConfigError(ValueError):
  """A config value that cannot run; the message names the key and value."""


def parse_config_file(config: str, args=()) -> ml_collections.ConfigDict:
  """The config file `config` (PATH or PATH:ARG) with `--config.k=v` `args`
  applied, parsed as main.py's command line is (absl + ml-collections)."""
  # pylint: disable=g-import-not-at-top
  from absl import flags
  from ml_collections import config_flags

  argv = ['main.py', f'--config={config}', *args]
  values = flags.FlagValues()
  # sys_argv: the overrides are read from it, not from the parsed list.
  config_flags.DEFINE_config_file(
    'config',
    None,
    'Experiment config.',
    flag_values=values,
    lock_config=True,
    sys_argv=argv,
  )
  values(argv)
  return values.config


def unknown_overrides(base: ml_collections.ConfigDict, args) -> list:
  """(key, arg) of each `--config.k=v` in `args` whose dotted key `base`
  lacks, in order (an override of another key is not named)."""
  out = []
  for arg in args:
    if not arg.startswith('--config.'):
      continue
    key = arg.split('=', 1)[0][len('--config.') :]
    if get(base, key) is MISSING:
      out.append((key, arg))
  return out


def get(config: ml_collections.ConfigDict, key: str, default=MISSING):
  """The value at dotted `key`, or `default` where a part is missing."""
  node = config
  for part in key.split('.'):
    if (
      not isinstance(node, (ml_collections.ConfigDict, dict))
      or part not in node
    ):
      return default
    node = node[part]
  return node


def fail(key: str, value, problem: str):
  raise ConfigError(f'config.{key}={value!r}: {problem}')


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def integer(config, key: str, *, minimum: int = 1):
  """The int at `key` (if present), which must be >= minimum."""
  value = get(config, key)
  if value is MISSING:
    return value
  if not _is_int(value):
    fail(key, value, f'must be an integer, got {type(value).__name__}.')
  if value < minimum:
    fail(
      key,
      value,
      'must be a positive integer.'
      if minimum == 1
      else f'must be an integer >= {minimum}.',
    )
  return value


def number(config, key: str, *, minimum: float = 0.0):
  """The finite number at `key` (if present), which must be >= minimum."""
  value = get(config, key)
  if value is MISSING:
    return value
  if (
    not isinstance(value, (int, float))
    or isinstance(value, bool)
    or (not math.isfinite(value))
  ):
    fail(key, value, 'must be a finite number.')
  if value < minimum:
    fail(key, value, f'must be >= {minimum:g}.')
  return value


def name(config, key: str, valid: Collection[str], what: str):
  """The name at `key` (if present), one of `valid`."""
  value = get(config, key)
  if value is not MISSING and (
    not isinstance(value, str) or value not in valid
  ):
    fail(key, value, f'unknown {what}; valid: {", ".join(sorted(valid))}.')
  return value


def split_names(value) -> list[str]:
  """'a,b', ('a', 'b') or ('a,b',) -> ['a', 'b'] (blanks dropped).

  ml_collections reads `--config.evaluate.heads=linear,mlp` into the tuple
  ('linear,mlp',); commas inside entries split them too.
  """
  if isinstance(value, str):
    value = (value,)
  return [n.strip() for v in value for n in str(v).split(',') if n.strip()]


def names(
  config, key: str, valid: Collection[str] | None, what: str
) -> tuple[str, ...]:
  """The list of names at `key` (() if absent), each one of `valid`."""
  values = get(config, key)
  if values is MISSING:
    return ()
  if isinstance(values, str) or not isinstance(values, (list, tuple)):
    fail(key, values, f'must be a list of {what}s.')
  parsed = split_names(values)
  for value in parsed if valid is not None else ():
    if value not in valid:
      fail(
        key,
        values,
        f'unknown {what} {value!r}; valid: {", ".join(sorted(valid))}.',
      )
  return tuple(parsed)


def wrap(key: str, value, check):
  """`check(value)`; a ValueError or OSError (a missing path) re-raised as a
  ConfigError naming `key`."""
  try:
    return check(value)
  except ConfigError:
    raise
  except (ValueError, OSError) as e:
    raise ConfigError(f'config.{key}={value!r}: {e}') from e
