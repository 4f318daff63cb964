"""sspr_jax entry point: `python main.py --config configs/<x>.py --workdir DIR`.

The config's `mode` names what runs (see `sspr_jax/modes.py`); overrides go
through ml-collections, e.g. `--config.data.seed=1`.
"""
from absl import app
from absl import flags
from ml_collections import config_flags

from sspr_jax import modes

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file (configs/*.py).', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for datasets, checkpoints, metrics and reports.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  modes.run(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
