"""Registry: objective name -> module."""

import types

from sspr_jax.objectives import jigsaw, moco, rotnet, simclr

OBJECTIVES: dict[str, types.ModuleType] = {
  'rotnet': rotnet,
  'jigsaw': jigsaw,
  'moco': moco,
  'simclr': simclr,
}


CLASSES = {
  'rotnet': rotnet.RotNet,
  'jigsaw': jigsaw.Jigsaw,
  'moco': moco.MoCo,
  'simclr': simclr.SimCLR,
}


def build_objective(config):
  """The objective object named by `config.objective`, set up from `config`."""
  return _lookup(CLASSES, config.objective)(config)


def _lookup(table, name):
  try:
    return table[name]
  except KeyError:
    raise ValueError(
      f'Unknown objective {name!r}; valid: {", ".join(sorted(table))}.'
    ) from None


def get_objective(name: str) -> types.ModuleType:
  """The objective module registered under `name`."""
  try:
    return OBJECTIVES[name]
  except KeyError:
    raise ValueError(
      f'Unknown objective {name!r}; valid: {", ".join(sorted(OBJECTIVES))}.'
    ) from None
