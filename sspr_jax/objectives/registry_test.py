import pytest

from sspr_jax import objectives
from sspr_jax.objectives import jigsaw, moco, rotnet, simclr


def test_get_objective_returns_classes():
  assert objectives.get_objective('rotnet') is rotnet.RotNet
  assert objectives.get_objective('jigsaw') is jigsaw.Jigsaw
  assert objectives.get_objective('moco') is moco.MoCo
  assert objectives.get_objective('simclr') is simclr.SimCLR


def test_unknown_name_lists_valid_ones():
  with pytest.raises(ValueError, match='jigsaw, moco, rotnet, simclr'):
    objectives.get_objective('swav')
