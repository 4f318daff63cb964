"""Registry: objective name -> objective class."""

from sspr_jax.objectives import base, jigsaw, moco, rotnet, simclr

CLASSES: dict[str, type[base.Objective]] = {
  'rotnet': rotnet.RotNet,
  'jigsaw': jigsaw.Jigsaw,
  'moco': moco.MoCo,
  'simclr': simclr.SimCLR,
}


def get_objective(name: str) -> type[base.Objective]:
  """The objective class registered under `name`."""
  try:
    return CLASSES[name]
  except KeyError:
    raise ValueError(
      f'Unknown objective {name!r}; valid: {", ".join(sorted(CLASSES))}.'
    ) from None


def build_objective(config) -> base.Objective:
  """The objective object named by `config.objective`, set up from `config`."""
  return get_objective(config.objective)(config)
