"""sspr_jax entry point: `python main.py --config configs/<x>.py --workdir DIR`.

The config's `mode` names what runs (see `sspr_jax/modes/`); overrides go
through ml-collections, e.g. `--config.data.seed=1`.
"""

import logging
import os
import re
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from sspr_jax.core import config_check
from sspr_jax.core import workdir_lock
from sspr_jax import modes

_CONFIG = config_flags.DEFINE_config_file(
  'config', None, 'Experiment config file (configs/*.py).', lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  'workdir', None, 'Directory for datasets, checkpoints, metrics and reports.'
)
_DISTRIBUTED = flags.DEFINE_bool(
  'distributed',
  False,
  'Call jax.distributed.initialize() first, for runs '
  'over several hosts/processes (TPU pods, SLURM and Open MPI are detected '
  'automatically; elsewhere give the three flags below).',
)
_COORDINATOR = flags.DEFINE_string(
  'coordinator_address', None, 'host:port of process 0 (with --distributed).'
)
_NUM_PROCESSES = flags.DEFINE_integer(
  'num_processes', None, 'With --distributed.'
)
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'With --distributed.')
_CHECK = flags.DEFINE_bool(
  'check',
  False,
  'Print the resolved config after every mode checked it, and exit '
  '(also done by --only_check_args).',
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  # Our progress goes through python logging and tqdm; Orbax and TFDS log
  # every file operation through absl at INFO, which would drown it.
  logging.getLogger().setLevel(logging.INFO)
  logging.getLogger('absl').setLevel(logging.WARNING)
  if _DISTRIBUTED.value:
    import jax  # pylint: disable=g-import-not-at-top

    # CPU-only hosts need a cross-process collectives backend (GPU/TPU have
    # their own); gloo ships with jaxlib.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(
      _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
    )
  try:
    if _CHECK.value:
      print(modes.check(_CONFIG.value))
      return
    modes.run(_CONFIG.value, _WORKDIR.value)
  except config_check.ConfigError as e:  # Checked before anything ran.
    sys.exit(f'{e}\nSee the config file (and docs/failure_guide.md).')
  except workdir_lock.WorkdirInUse as e:  # Refused before anything ran.
    sys.exit(str(e))
  except OSError as e:  # The workdir or a file: one line naming the path.
    if 'config file' in str(e) or 'Configuration is not available' in str(e):
      sys.exit(_config_file_message(e))  # ml-collections could not load it.
    path = e.filename if e.filename is not None else ''
    sys.exit(
      f'{path}: {e.strerror or e}'.lstrip(': ')
      + ' (a path of the workdir, its outputs or the data; see '
      'docs/failure_guide.md).'
    )


def _config_arg(argv) -> str | None:
  """The value of --config (PATH or PATH:ARG) in `argv`, or None."""
  return next(
    (
      a.split('=', 1)[1] if '=' in a else argv[i + 1]
      for i, a in enumerate(argv)
      if (a == '--config' and i + 1 < len(argv)) or a.startswith('--config=')
    ),
    None,
  )


def _config_file_message(error: OSError) -> str:
  """One line for a --config file that did not load (missing, unreadable)."""
  given = _config_arg(sys.argv) or '?'
  path = given.split(':', 1)[0]
  cause = error
  while cause.__cause__ is not None:
    cause = cause.__cause__
  if not os.path.exists(path):
    problem = 'no such file'
  else:
    problem = str(cause).strip().splitlines()[-1].strip()
  return (
    f'--config {given}: {problem} (paths are relative to the current '
    f'folder, {os.getcwd()}; the configs are in configs/).'
  )


def _unknown_key_message(error: Exception, argv) -> str:
  """'Unknown config key ...' naming the override, from ml-collections' error.

  Its KeyError (sometimes inside an AttributeError) reads `'bach_size'` then
  an optional line `Did you mean "batch_size" instead of "bach_size"?`, or
  `Attribute ... does not exist ... Attempting to lookup: batch_size.x`.
  """
  text = error
  while isinstance(text, BaseException) and text.args:
    text = text.args[0]
  first, _, hint = str(text).strip().partition('\n')
  quoted = re.fullmatch(r"""['"]([^'"]+)['"]""", first.strip())
  lookup = re.search(r'Attempting to lookup: (\S+)', first)
  if quoted:
    key = quoted.group(1)
  elif lookup:
    key, hint = lookup.group(1), first
  else:
    key = first.strip()

  bad = [arg for _, arg in _overrides_the_config_lacks(argv)]
  hint = hint.strip().rstrip('.?') + (
    '?' if hint.strip().endswith('?') else '.'
  )
  return ' '.join(
    [f'Unknown config key {key!r} in {" ".join(bad) or "an override"}.']
    + ([hint] if hint not in ('.', '?') else [])
    + ['See the config file for the valid keys.']
  )


def _overrides_the_config_lacks(argv) -> list:
  """(key, arg) of the overrides whose key the --config file's config lacks
  (`config_check.unknown_overrides`, as the sweeps check them)."""
  config = _config_arg(argv)
  if config is None:
    return []
  try:
    base = config_check.parse_config_file(config)
  except Exception:  # pylint: disable=broad-except
    return []  # The file itself fails: main reports that.
  return config_check.unknown_overrides(base, argv)


def _quote_name_lists(argv):
  """`--config.k=a,b:c` -> `--config.k=('a', 'b:c')`.

  ml-collections reads `a,b` as a tuple of names but gives up on an entry
  with a colon (`pixels:32`, `imagenet_resnet50:/w.pth`).
  """
  out = []
  for arg in argv:
    key, sep, value = arg.partition('=')
    if (
      key.startswith('--config.')
      and sep
      and ',' in value
      and ':' in value
      and not any(c in value for c in '\'"()[]{}')
    ):
      arg = f'{key}={tuple(v.strip() for v in value.split(","))!r}'
    out.append(arg)
  return out


def _parse_flags(argv):
  """absl flag parsing, with a plain message for a misspelt config override."""
  try:
    argv = flags.FLAGS(_quote_name_lists(argv))
    if flags.FLAGS.only_check_args:  # absl exits without running main.
      try:
        print(modes.check(_CONFIG.value))
      except config_check.ConfigError as e:
        sys.exit(f'{e}\nSee the config file (and docs/failure_guide.md).')
    return argv
  except (AttributeError, KeyError) as e:
    sys.exit(_unknown_key_message(e, argv))
  except flags.Error as e:  # Wrong type, missing --workdir, unknown flag...
    sys.exit(
      f'{e}\nUsage: python main.py --config configs/<x>.py --workdir DIR '
      '[--config.key=value ...]'
    )


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=_parse_flags)
