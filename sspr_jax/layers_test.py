"""The package import rule (docs/architecture.md), checked on the source.

Packages import downwards only: core, data and models at the bottom,
objectives above them, train and evaluate side by side and never into each
other, modes on top, sweeps above them. Function-level imports count too.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parent
# Package -> the sspr_jax packages its modules may import (itself included).
ALLOWED = {
  'core': {'core'},
  'data': {'core', 'data'},
  'models': {'core', 'models'},
  'objectives': {'core', 'data', 'models', 'objectives'},
  'train': {'core', 'data', 'models', 'objectives', 'train'},
  'evaluate': {'core', 'data', 'models', 'evaluate'},
  'modes': {
    'core',
    'data',
    'models',
    'objectives',
    'train',
    'evaluate',
    'modes',
  },
  'sweeps': {
    'core',
    'data',
    'models',
    'objectives',
    'train',
    'evaluate',
    'modes',
    'sweeps',
  },
}


def _imported_packages(path: pathlib.Path) -> set[str]:
  """The sspr_jax sub-packages a module imports."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [node.module] + [f'{node.module}.{a.name}' for a in node.names]
    else:
      continue
    for name in names:
      parts = name.split('.')
      if parts[0] == 'sspr_jax' and len(parts) > 1 and parts[1] in ALLOWED:
        found.add(parts[1])
  return found


def _modules():
  for path in sorted(ROOT.rglob('*.py')):
    package = path.relative_to(ROOT).parts[0]
    if package in ALLOWED and not path.name.endswith('_test.py'):
      yield package, path


@pytest.mark.parametrize(
  'package,path', list(_modules()), ids=lambda v: str(v).split('sspr_jax/')[-1]
)
def test_imports_run_downwards(package, path):
  wrong = _imported_packages(path) - ALLOWED[package]
  assert not wrong, f'{path.relative_to(ROOT)} imports {sorted(wrong)}'


def test_every_package_has_a_rule():
  packages = {p.name for p in ROOT.iterdir() if (p / '__init__.py').exists()}
  assert packages == set(ALLOWED)


def test_the_rule_catches_an_upward_import(tmp_path):
  module = tmp_path / 'bad.py'
  module.write_text(
    'def f():\n  from sspr_jax.train import trainer\n  from sspr_jax import modes\n'
  )
  assert _imported_packages(module) == {'train', 'modes'}


def _imported_modes(path: pathlib.Path) -> set[str]:
  """The sspr_jax.modes modules a module imports."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.ImportFrom) and node.module == 'sspr_jax.modes':
      found |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      if node.module.startswith('sspr_jax.modes.'):
        found.add(node.module.split('.')[2])
    elif isinstance(node, ast.Import):
      found |= {
        a.name.split('.')[2]
        for a in node.names
        if a.name.startswith('sspr_jax.modes.')
      }
  return found


def test_modes_are_peers():
  """A mode imports the helpers beside it (common, outputs), never another
  mode: what two modes share lives in modes/common.py."""
  from sspr_jax import modes  # pylint: disable=g-import-not-at-top

  names = {m.rsplit('.', 1)[-1] for m in modes._MODES.values()}  # pylint: disable=protected-access
  assert names == {
    'prepare_data',
    'pretrain',
    'evaluate',
    'recognize',
    'export',
  }
  for name in sorted(names | {'common', 'outputs'}):
    imported = _imported_modes(ROOT / 'modes' / f'{name}.py')
    assert not imported & names, f'modes/{name}.py imports {imported & names}'


def test_the_peer_rule_catches_a_mode_importing_a_mode(tmp_path):
  module = tmp_path / 'bad.py'
  module.write_text(
    'from sspr_jax.modes import evaluate as evaluate_mode\n'
    'def f():\n  from sspr_jax.modes.pretrain import run\n'
  )
  assert _imported_modes(module) == {'evaluate', 'pretrain'}
