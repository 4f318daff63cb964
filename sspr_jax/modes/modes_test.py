"""modes.run saves the resolved config; --check and --only_check_args check."""

import json
import os
import subprocess
import sys

from configs import quickstart
from sspr_jax import modes

REPO = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


def test_run_saves_the_resolved_config(tmp_path, monkeypatch):
  ran = []
  monkeypatch.setattr(
    'sspr_jax.modes.prepare_data.run', lambda s, w: ran.append(w)
  )
  config = quickstart.get_config()
  config.mode = 'prepare_data'
  config.data.seed = 7  # An override, as --config.data.seed=7 would make.
  modes.run(config, str(tmp_path))
  assert ran == [str(tmp_path)]
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['data']['seed'] == 7 and saved['objective'] == 'simclr'


def test_check_prints_the_config_and_runs_nothing(tmp_path):
  def main(*flags):
    return subprocess.run(
      [
        sys.executable,
        'main.py',
        '--config',
        'configs/quickstart.py',
        '--workdir',
        str(tmp_path / 'run'),
        *flags,
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
    )

  out = main('--check', '--config.num_epochs=3')
  assert out.returncode == 0, out.stderr[-2000:]
  assert '"num_epochs": 3' in out.stdout
  assert 'Config OK for mode(s): pretrain, evaluate.' in out.stdout
  # A list of names with a colon in one (ml-collections alone refuses it).
  out = main('--check', '--config.evaluate.baselines=random,pixels:32')
  assert out.returncode == 0, out.stderr[-2000:]
  assert '"random",\n      "pixels:32"' in out.stdout
  out = main('--only_check_args', '--config.batch_size=0')
  assert out.returncode == 1
  assert 'config.batch_size=0: must be a positive integer.' in out.stderr
  assert not (tmp_path / 'run').exists()


def test_a_missing_config_file_and_a_bad_workdir_are_one_line(tmp_path):
  def main(config, workdir):
    return subprocess.run(
      [sys.executable, 'main.py', '--config', config, '--workdir', workdir],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=300,
    )

  out = main('configs/no_such.py', str(tmp_path / 'run'))
  assert out.returncode == 1 and 'Traceback' not in out.stderr
  assert out.stderr.strip().splitlines()[-1] == (
    '--config configs/no_such.py: no such file (paths are relative to the '
    f'current folder, {REPO}; the configs are in configs/).'
  )
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  out = main('configs/quickstart.py', str(blocker / 'run'))
  assert out.returncode == 1 and 'Traceback' not in out.stderr
  assert out.stderr.strip().splitlines()[-1] == (
    f'{blocker}/run: Not a directory (a path of the workdir, its outputs or '
    'the data; see docs/failure_guide.md).'
  )
  assert not (tmp_path / 'run').exists()
