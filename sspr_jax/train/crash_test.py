"""kill -9 of a training process, then the same command: nothing is lost."""

import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sspr_jax.core import checkpoint as checkpoint_lib
from sspr_jax.testing import config_file as _config_file
from sspr_jax.testing import REPO, child_env

STEPS = 8


def _command(config_file, workdir, tiny_raw_data, tiny_datasets):
  overrides = {
    'mode': 'pretrain',
    'total_steps': STEPS,
    'checkpoint_every_steps': 2,
    'log_every_steps': 1,
    'eval_every_steps': 0,
    'data.source': 'manual',
    'data.data_dir': str(tiny_datasets),
    'data.sku110k_manual_dir': str(tiny_raw_data['archive'].parent),
    'data.rack_manual_dir': str(tiny_raw_data['racks']),
    'data.sku110k_config': '128',
  }
  return [
    sys.executable,
    'main.py',
    '--config',
    config_file,
    '--workdir',
    str(workdir),
  ] + [f'--config.{k}={v}' for k, v in overrides.items()]


def _run(cmd):
  out = subprocess.run(
    cmd,
    cwd=REPO,
    env=child_env(),
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert out.returncode == 0, out.stderr[-4000:]


def _final_state(workdir):
  return checkpoint_lib.load_state(
    str(workdir / 'checkpoints' / str(STEPS) / 'state')
  )


@pytest.fixture(scope='module')
def uninterrupted(tiny_raw_data, tiny_datasets, tmp_path_factory):
  tmp = tmp_path_factory.mktemp('uninterrupted')
  _run(
    _command(
      _config_file(tmp, 'moco'), tmp / 'run', tiny_raw_data, tiny_datasets
    )
  )
  return _final_state(tmp / 'run')


@pytest.mark.parametrize('seed', [0, 1])
def test_kill_9_then_rerun_equals_uninterrupted(
  seed, uninterrupted, tiny_raw_data, tiny_datasets, tmp_path
):
  kill_after = np.random.default_rng(seed).integers(
    2, STEPS - 1
  )  # logged steps
  workdir = tmp_path / 'run'
  cmd = _command(
    _config_file(tmp_path, 'moco'), workdir, tiny_raw_data, tiny_datasets
  )
  proc = subprocess.Popen(
    cmd,
    cwd=REPO,
    env=child_env(),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  metrics = workdir / 'metrics.jsonl'
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after:
      break
    time.sleep(0.05)
  assert proc.poll() is None, proc.communicate()[1][-3000:]
  proc.send_signal(signal.SIGKILL)
  proc.communicate(timeout=60)
  assert not (workdir / 'checkpoints' / str(STEPS)).exists()
  _run(cmd)
  resumed = _final_state(workdir)
  for name in ('params', 'batch_stats', 'opt_state', 'extra', 'step'):
    for a, b in zip(
      jax.tree.leaves(uninterrupted[name]), jax.tree.leaves(resumed[name])
    ):
      np.testing.assert_allclose(
        np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6, err_msg=name
      )
