"""Sweep files: grids, run names, printed commands that parse back, checks."""

import os
import shlex
import subprocess
import sys

import pytest

from configs import common
from sspr_jax.core import config_check
from sspr_jax.sweeps import run as run_lib
from sspr_jax.sweeps import spec
from sspr_jax.testing import REPO


def test_grid_is_the_product_first_axis_slowest():
  assert common.grid(objective=['simclr', 'moco'], num_epochs=[8, 32]) == [
    {'objective': 'simclr', 'num_epochs': 8},
    {'objective': 'simclr', 'num_epochs': 32},
    {'objective': 'moco', 'num_epochs': 8},
    {'objective': 'moco', 'num_epochs': 32},
  ]
  assert common.grid() == [{}]
  with pytest.raises(TypeError, match='list of values'):
    common.grid(batch_size=64)


def test_run_names_are_readable_folder_names():
  assert spec.run_name({'batch_size': 64}) == 'batch_size=64'
  assert (
    spec.run_name({'config': 'configs/quickstart.py:moco', 'num_epochs': 16})
    == 'moco+num_epochs=16'
  )
  # No commas (config.checkpoints splits on them) and no slashes.
  assert (
    spec.run_name({'evaluate.baselines': ('random', 'pixels:32')})
    == 'evaluate.baselines=random-pixels_32'
  )
  assert spec.run_name({'data.dir': '/a/b'}) == 'data.dir=_a_b'


def _sweep_file(tmp_path, runs, base='configs/quickstart.py:moco'):
  path = tmp_path / 'sweep.py'
  path.write_text(
    'from configs import common\n\n\n'
    f'def get_sweep():\n  return {base!r}, {runs}\n'
  )
  return str(path)


@pytest.mark.parametrize(
  'sweep', ['configs/sweeps/moco_batch.py', 'configs/sweeps/objectives.py']
)
def test_printed_commands_parse_back_into_the_checked_configs(
  sweep, monkeypatch
):
  monkeypatch.chdir(REPO)
  runs = spec.load(sweep)
  configs = spec.check(runs)
  lines = [spec.command_line(r, '/runs/root') for r in runs]
  for line, run, config in zip(lines, runs, configs):
    argv = shlex.split(line)
    assert argv[:2] == ['python', 'main.py']
    assert argv[argv.index('--workdir') + 1] == f'/runs/root/{run.name}'
    # Parsed as main.py parses it: the same config.
    config_arg = argv[argv.index('--config') + 1]
    overrides = [a for a in argv if a.startswith('--config.')]
    parsed = spec.resolve(spec.Run(run.name, config_arg, {}, tuple(overrides)))
    assert parsed.to_json(sort_keys=True) == config.to_json(sort_keys=True)
  if sweep.endswith('moco_batch.py'):
    assert [r.name for r in runs] == [
      'batch_size=32',
      'batch_size=64',
      'batch_size=128',
    ]
    # lr 0.2 x B / 256: the quick start's 0.05 at 64, linear around it.
    assert [c.batch_size for c in configs] == [32, 64, 128]
    assert all(c.optimizer.scale_lr_by_batch for c in configs)
    assert {c.objective for c in configs} == {'moco'}
  else:
    assert [(c.objective, c.num_epochs) for c in configs] == [
      ('simclr', 16),
      ('simclr', 32),
      ('moco', 16),
      ('moco', 32),
    ]
    assert runs[2].name == 'moco+num_epochs=16'


def test_print_commands_prints_one_main_py_line_per_run(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      '-m',
      'sspr_jax.sweeps.run',
      '--sweep',
      'configs/sweeps/moco_batch.py',
      '--workdir',
      str(tmp_path / 'root'),
      '--print_commands',
      '--config.num_epochs=2',
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.strip().splitlines()
  assert len(lines) == 3
  assert all(
    line.startswith('python main.py --config configs/quickstart.py:moco')
    for line in lines
  )
  assert '--config.num_epochs=2' in lines[0]
  assert f'{tmp_path}/root/batch_size=128' in lines[2]
  assert not (tmp_path / 'root').exists()


@pytest.mark.parametrize(
  'runs,message',
  [
    (
      [{'batch_size': 32}, {'bach_size': 64}],
      "Run 'bach_size=64': unknown config key 'bach_size' "
      '(--config.bach_size=64).',
    ),
    (
      [{'batch_size': 'abc'}],
      "Run 'batch_size=abc': flag --config.batch_size=abc: invalid literal",
    ),
    (
      [{'batch_size': 30}],
      "Run 'batch_size=30': config.moco.shuffle_bn_groups=4: must divide",
    ),
    ([{'seed': 1}, {'seed': 1}], 'several runs are named seed=1'),
  ],
)
def test_a_bad_run_fails_up_front_in_one_line(
  tmp_path, monkeypatch, capsys, runs, message
):
  monkeypatch.chdir(REPO)
  with pytest.raises(SystemExit) as exit_info:
    run_lib.main(
      ['--sweep', _sweep_file(tmp_path, runs), '--workdir', str(tmp_path / 'r')]
    )
  first = str(exit_info.value.code).splitlines()[0]
  assert message in first
  assert 'No run started.' in str(exit_info.value.code)
  assert not (tmp_path / 'r').exists()


def test_fixed_overrides_may_not_set_a_swept_key(tmp_path, monkeypatch):
  monkeypatch.chdir(REPO)
  with pytest.raises(config_check.ConfigError, match='sweeps over this key'):
    spec.load(_sweep_file(tmp_path, [{'seed': 0}]), ['--config.seed=3'])


def test_a_shipped_sweep_runs_from_another_folder(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # Its base config path is relative to REPO.
  runs = spec.load(os.path.join(REPO, 'configs/sweeps/moco_batch.py'))
  assert runs[0].config == os.path.join(REPO, 'configs/quickstart.py:moco')
  assert [c.batch_size for c in spec.check(runs)] == [32, 64, 128]
  argv = shlex.split(spec.command_line(runs[0], 'root'))
  assert argv[1] == os.path.join(REPO, 'main.py')
  assert argv[argv.index('--config') + 1] == runs[0].config


@pytest.mark.parametrize(
  'returned', ["{'batch_size': [1]}", "('configs/quickstart.py', [3])"]
)
def test_get_sweep_of_the_wrong_type_is_one_line(tmp_path, returned):
  sweep = tmp_path / 'bad.py'
  sweep.write_text(f'def get_sweep():\n  return {returned}\n')
  with pytest.raises(config_check.ConfigError, match=r'get_sweep\(\) must'):
    spec.load(str(sweep))
