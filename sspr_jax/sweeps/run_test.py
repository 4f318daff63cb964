"""A real sweep of tiny quick-start runs: runs, goes on past a failure, skips
what is complete, and reports the finished runs."""

import fcntl
import json
import os

from configs import quickstart
from sspr_jax.core import results
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
  # seed=0's workdir is held by a live process (this one): the sweep says it
  # runs elsewhere, goes on to seed=1 (one real run: each costs ~20 s of CI)
  # and writes no report, which would be partial.
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
    assert 'seed=0' in summary and 'running elsewhere' in summary
    assert 'No report: seed=0 running elsewhere' in out
    assert not (root / 'report.md').exists()
    assert not (root / 'seed=0' / 'sweep.log').exists()  # Never launched.
  finally:
    lock.close()
  saved = json.loads((root / 'seed=1' / 'config.json').read_text())
  assert saved['seed'] == 1 and saved['total_steps'] == 2
  assert (root / 'seed=1' / 'metrics.json').exists()

  # Again, seed=0 now failing (its checkpoints folder is a file): the
  # complete run is skipped, and the report names the failed one.
  (root / 'seed=0' / 'checkpoints').write_text('not a folder')
  assert run_lib.main(argv) == 1
  out = capsys.readouterr().out
  assert out.count('complete (results.json), skipped.') == 1
  assert out.count('[sweep 1/2] seed=0: python main.py') == 1
  assert 'failed (exit 1)' in out
  text = (root / 'report.md').read_text()
  assert '| seed=1 | simclr step 2 |' in text
  assert '| seed=0 |' not in text
  assert 'Not in the table: seed=0 (failed (exit 1)).' in text
  assert (root / 'map_over_steps.png').stat().st_size > 1000
  assert results.is_complete(str(root), 'sweep_report')
  assert sorted(os.listdir(root)) == [
    'map_over_steps.png',
    'report.md',
    'results.json',
    'seed=0',
    'seed=1',
  ]


def test_a_changed_sweep_after_a_kill_runs_again(
  tiny_raw_data, tiny_datasets, tmp_path, monkeypatch, capsys
):
  monkeypatch.chdir(REPO)
  monkeypatch.setenv('XLA_FLAGS', child_env()['XLA_FLAGS'])
  sweep = tmp_path / 'one.py'
  sweep.write_text(
    'def get_sweep():\n'
    "  return 'configs/quickstart.py', [{'checkpoint_every_steps': 2}]\n"
  )
  root = tmp_path / 'root'
  argv = ['--sweep', str(sweep), '--workdir', str(root)]
  argv += tiny_args(tiny_raw_data, tiny_datasets)
  assert run_lib.main(argv) == 0
  assert '| simclr step 2 |' in (root / 'report.md').read_text()
  # 2 -> 4 steps, and the run is killed (-9) after saving a checkpoint.
  argv.append('--config.total_steps=4')
  monkeypatch.setenv(results.FAULT_VARIABLE, 'train:checkpoint_saved')
  assert run_lib.main(argv) == 1
  assert 'failed (exit -9)' in capsys.readouterr().out
  (run,) = [p for p in root.iterdir() if p.is_dir()]
  assert not results.is_complete(str(run), 'pretrain')
  monkeypatch.delenv(results.FAULT_VARIABLE)
  # Not "complete, skipped" with the 2-step metrics: resumed and evaluated.
  assert run_lib.main(argv) == 0
  out = capsys.readouterr().out
  assert 'skipped' not in out
  text = (root / 'report.md').read_text()
  assert '| simclr step 4 |' in text and 'step 2 |' not in text
  assert [r['step'] for r in json.load(open(run / 'metrics.json'))][0] == 4


def test_complete_means_recorded_complete_with_the_same_config(tmp_path):
  config = quickstart.get_config()
  config.mode = 'pretrain,evaluate'
  (tmp_path / 'metrics.json').write_text('[]')  # No record: not complete.
  assert not run_lib.is_complete(config, str(tmp_path))
  results.mark(str(tmp_path), 'evaluate', config, complete=True)
  assert run_lib.is_complete(config, str(tmp_path))
  config.num_epochs = 64  # The sweep file changed since.
  assert not run_lib.is_complete(config, str(tmp_path))
  config.mode = 'pretrain'  # The last mode's record is the one that counts.
  assert not run_lib.is_complete(config, str(tmp_path))
