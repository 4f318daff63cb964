"""constraints.txt pins every distribution the project installs, within
pyproject.toml's bounds (tools/write_constraints.py writes it)."""

import importlib.util
import os
import re

from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location(
  'write_constraints', os.path.join(ROOT, 'tools', 'write_constraints.py')
)
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)


def _pins() -> dict[str, str]:
  pins = {}
  with open(tool.PATH) as f:
    for n, line in enumerate(f, 1):
      line = line.strip()
      if not line or line.startswith('#'):
        continue
      name, sep, version = line.partition('==')
      assert sep and version, f'constraints.txt:{n}: not NAME==VERSION'
      pins[tool.canonical(name)] = version
  return pins


def _pyproject_requirements() -> list[Requirement]:
  text = open(os.path.join(ROOT, 'pyproject.toml')).read()
  block = re.search(r'dependencies = \[(.*?)\]', text, re.S).group(1)
  extras = re.search(r'test = \[(.*?)\]', text, re.S).group(1)
  quoted = re.findall(r'"([^"]+)"', block + extras)
  return [Requirement(q) for q in quoted]


def test_every_installed_dependency_is_pinned():
  missing = sorted(set(tool.closure()) - set(_pins()))
  assert not missing, (
    f'Not in constraints.txt: {missing}; run python tools/write_constraints.py'
  )


def test_pins_satisfy_pyproject_bounds():
  pins = _pins()
  requirements = _pyproject_requirements()
  assert {'jax', 'flax', 'pytest'} <= {
    tool.canonical(r.name) for r in requirements
  }
  for req in requirements:
    version = pins[tool.canonical(req.name)]
    assert req.specifier.contains(version), (req, version)
