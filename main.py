"""sspr_jax entry point: `python main.py --config configs/<x>.py --workdir DIR`.

The config's `mode` names what runs (see `sspr_jax/modes.py`); overrides go
through ml-collections, e.g. `--config.data.seed=1`.
"""
import logging
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from sspr_jax import modes

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file (configs/*.py).', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for datasets, checkpoints, metrics and reports.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Call jax.distributed.initialize() first, for runs '
    'over several hosts/processes (TPU pods, SLURM and Open MPI are detected '
    'automatically; elsewhere give the three flags below).')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0 (with --distributed).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'With --distributed.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'With --distributed.')


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
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                               _PROCESS_ID.value)
  modes.run(_CONFIG.value, _WORKDIR.value)


def _parse_flags(argv):
  """absl flag parsing, with a plain message for a misspelt config override."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    key = str(e).strip('"\'')
    bad = [a for a in argv if a.startswith('--config.') and key in a]
    sys.exit(f'Unknown config key {key!r} in {" ".join(bad) or "an override"}; '
             'see the config file for the valid keys.')
  except flags.Error as e:  # Wrong type, missing --workdir, unknown flag...
    sys.exit(f'{e}\nUsage: python main.py --config configs/<x>.py --workdir DIR '
             '[--config.key=value ...]')


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main, flags_parser=_parse_flags)
