"""A real sweep of tiny quick-start runs: runs, goes on past a failure, skips
what is complete, and reports the finished runs."""

import fcntl
import json
import os

from configs import quickstart
from sspr_jax import modes
from sspr_jax.core import workdir_lock
from sspr_jax.sweeps import run as run_lib
from sspr_jax.testing import REPO, child_env, tiny_data


def tiny_args(tiny_raw_data, tiny_datasets):
  """--config overrides of a quick-start run of seconds on the tiny data."""
  data = tiny_data(tiny_raw_data, tiny_datasets)
  settings = {f'data.{k}': v for k, v in data.items()}
  settings.update(
    {
      'input.canvas_size': 40,
      'batch_size': 16,
      'total_steps': 2,
      'log_every_steps': 1,
      'eval_every_steps': 1,
      'simclr.view_size': 32,
      'simclr.hidden_dims': '(32,)',
      'simclr.out_dim': 16,
      'evaluate.image_size': 32,
      'evaluate.batch_size': 16,
      'evaluate.evaluators': 'gallery_map',
      'evaluate.periodic': 'gallery_map',
      'evaluate.baselines': 'pixels',
    }
  )
  return [f'--config.{k}={v}' for k, v in settings.items()]


def test_sweep_runs_goes_on_past_a_failed_run_skips_and_reports(
  tiny_raw_data, tiny_datasets, tmp_path, monkeypatch, capsys
):
  monkeypatch.chdir(REPO)
  # The sweep's runs are child processes: compile them fast (trainer_test).
  monkeypatch.setenv('XLA_FLAGS', child_env()['XLA_FLAGS'])
  sweep = tmp_path / 'seeds.py'
  sweep.write_text(
    'from configs import common\n\n\n'
    'def get_sweep():\n'
    "  return 'configs/quickstart.py', common.grid(seed=[0, 1])\n"
  )
  root = tmp_path / 'root'
  # seed=0's workdir is held by a live process (this one): its run fails,
  # and the sweep goes on to seed=1 (one real run: each costs ~20 s of CI).
  (root / 'seed=0').mkdir(parents=True)
  lock = open(workdir_lock.lock_path(str(root / 'seed=0')), 'w')
  fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
  argv = ['--sweep', str(sweep), '--workdir', str(root)]
  argv += tiny_args(tiny_raw_data, tiny_datasets)
  try:
    assert run_lib.main(argv) == 1
    out = capsys.readouterr().out
    summary = out[out.index('Sweep ' + str(root)) :]
    assert 'seed=1' in summary and summary.count(' done') == 1
    assert 'seed=0' in summary and 'failed (exit 1)' in summary
    log = (root / 'seed=0' / 'sweep.log').read_text()
    assert 'is in use by another process' in log
    for name in ('seed=1',):
      saved = json.loads((root / name / 'config.json').read_text())
      assert saved['seed'] == int(name[-1]) and saved['total_steps'] == 2
      assert (root / name / 'metrics.json').exists()
    text = (root / 'report.md').read_text()
    assert '| seed=1 | simclr step 2 |' in text
    assert '| seed=0 |' not in text
    assert 'Not in the table: seed=0 (failed (exit 1)).' in text
    assert (root / 'map_over_steps.png').stat().st_size > 1000

    # Again: the complete runs are skipped, the locked one fails again.
    assert run_lib.main(argv) == 1
    out = capsys.readouterr().out
    assert out.count('complete (metrics.json), skipped.') == 1
    assert out.count('[sweep 1/2] seed=0: python main.py') == 1
  finally:
    lock.close()
  assert sorted(os.listdir(root)) == [
    'map_over_steps.png',
    'report.md',
    'seed=0',
    'seed=1',
  ]


def test_complete_means_evaluated_with_the_same_config(tmp_path):
  config = quickstart.get_config()
  config.mode = 'pretrain'
  (tmp_path / 'metrics.json').write_text('[]')
  assert not run_lib.is_complete(config, str(tmp_path))  # Never evaluated.
  config.mode = 'pretrain,evaluate'
  assert run_lib.is_complete(config, str(tmp_path))
  modes.save_config(config, str(tmp_path))
  assert run_lib.is_complete(config, str(tmp_path))
  config.num_epochs = 64  # The sweep file changed since.
  assert not run_lib.is_complete(config, str(tmp_path))
