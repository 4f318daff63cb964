"""One run per workdir: real processes hold the lock, die, and are refused."""

import json
import os
import signal
import socket
import subprocess
import sys

import ml_collections
import pytest

from sspr_jax import modes
from sspr_jax.core import workdir_lock

REPO = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)
# Holds the lock until its stdin closes.
_HOLDER = """
import sys
from sspr_jax.core import workdir_lock
with workdir_lock.hold(sys.argv[1], int(sys.argv[2])):
  print('ready', flush=True)
  sys.stdin.read()
"""


@pytest.fixture
def holder():
  """Starts a process holding a workdir's lock; ends them all afterwards."""
  procs = []

  def start(workdir, process_index=0):
    proc = subprocess.Popen(
      [sys.executable, '-c', _HOLDER, str(workdir), str(process_index)],
      cwd=REPO,
      env=dict(os.environ, PYTHONPATH=REPO),
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
    )
    procs.append(proc)
    assert proc.stdout.readline() == 'ready\n'
    return proc

  yield start
  for proc in procs:
    if proc.poll() is None:
      proc.kill()
    proc.wait()


def _refusal(workdir, process_index=0) -> str:
  with pytest.raises(workdir_lock.WorkdirInUse) as error:
    with workdir_lock.hold(str(workdir), process_index):
      pass
  return str(error.value)


def test_second_process_is_refused_naming_the_first(tmp_path, holder):
  first = holder(tmp_path)
  message = _refusal(tmp_path)
  assert message.startswith(
    f'WORKDIR {tmp_path} is in use by process {first.pid} on host '
    f'{socket.gethostname()} since '
  )
  assert f'(started with -c {tmp_path} 0); wait for it' in message
  assert message.endswith('or use another --workdir.')
  assert '\n' not in message
  # Once it has exited, a new run proceeds and writes its own details.
  first.stdin.close()
  assert first.wait(timeout=60) == 0
  with workdir_lock.hold(str(tmp_path)) as path:
    assert json.loads(open(path).read())['pid'] == os.getpid()


def test_lock_of_a_killed_process_is_free(tmp_path, holder):
  first = holder(tmp_path)
  os.kill(first.pid, signal.SIGKILL)
  first.wait(timeout=60)
  path = workdir_lock.lock_path(str(tmp_path))
  # The file stays, naming the dead process; no one holds its flock.
  assert json.loads(open(path).read())['pid'] == first.pid
  with workdir_lock.hold(str(tmp_path)):
    assert json.loads(open(path).read())['pid'] == os.getpid()


def test_lock_is_released_after_an_exception(tmp_path):
  with pytest.raises(KeyError):
    with workdir_lock.hold(str(tmp_path)):
      _refusal(tmp_path)  # Held, even against this process.
      raise KeyError('boom')
  with workdir_lock.hold(str(tmp_path)):
    pass


def test_processes_of_one_run_do_not_block_each_other(tmp_path, holder):
  holder(tmp_path, 0)
  with workdir_lock.hold(str(tmp_path), 1):
    # The same process index of a second run is refused.
    assert 'in use by process' in _refusal(tmp_path, 1)
  assert 'in use by process' in _refusal(tmp_path, 0)


def test_modes_run_holds_the_workdir_for_its_modes(tmp_path, monkeypatch):
  ran = []

  def run(settings, workdir):
    ran.append(_refusal(workdir))

  monkeypatch.setattr('sspr_jax.modes.prepare_data.run', run)
  config = ml_collections.ConfigDict(
    {'mode': 'prepare_data', 'data': {'source': 'manual'}}
  )
  modes.run(config, str(tmp_path / 'new'))
  assert len(ran) == 1 and str(os.getpid()) in ran[0]
  with workdir_lock.hold(str(tmp_path / 'new')):
    pass


def test_main_refuses_with_one_line(tmp_path, holder):
  first = holder(tmp_path / 'run')
  config = tmp_path / 'config.py'
  # If the lock did not hold, this would fail fast on the missing manual dirs.
  config.write_text(
    'import ml_collections\n'
    'def get_config():\n'
    "  return ml_collections.ConfigDict({'mode': 'prepare_data', "
    "'data': {'source': 'manual'}})\n"
  )
  out = subprocess.run(
    [sys.executable, 'main.py', '--config', str(config)]
    + ['--workdir', str(tmp_path / 'run'), '--config.mode=prepare_data'],
    cwd=REPO,
    env=dict(os.environ, PYTHONPATH=REPO),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 1, out.stderr
  assert 'Traceback' not in out.stderr
  last = out.stderr.strip().splitlines()[-1]
  assert last.startswith(
    f'WORKDIR {tmp_path / "run"} is in use by process {first.pid} on host '
  )
  assert last.endswith('; wait for it or use another --workdir.')
  assert os.listdir(tmp_path / 'run') == ['.lock']  # Nothing else written.
