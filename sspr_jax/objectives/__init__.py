"""Self-supervised pre-training objectives (RotNet, Jigsaw, MoCo v2, SimCLR)."""

from sspr_jax.objectives.registry import (
  CLASSES,
  build_objective,
  get_objective,
)

__all__ = ['CLASSES', 'build_objective', 'get_objective']
