"""Checkpoint writes that fail: a clear error naming the step, nothing lost.

A real write failure without root-proof permissions or a small filesystem:
RLIMIT_FSIZE caps the size of any file this process writes, so TensorStore's
write of the state fails with the OS error EFBIG ("File too large"), from its
background thread, as a full disk (ENOSPC) would. Python ignores SIGXFSZ, so
the write fails instead of killing the process.
"""

import contextlib
import errno
import os
import threading

import jax
import numpy as np
import pytest

from sspr_jax.core import checkpoint as checkpoint_lib

resource = pytest.importorskip('resource')  # POSIX only.

# The state's data file (~200 KB of random floats) cannot be written; small
# files (metadata, JSON) still can.
FILE_SIZE_LIMIT = 64 * 1024


@contextlib.contextmanager
def file_size_limit(limit: int = FILE_SIZE_LIMIT):
  soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
  resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
  try:
    yield
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _state(seed=0):
  return {
    'w': jax.random.normal(jax.random.key(seed), (50_000,)),
    'step': jax.numpy.int32(seed),
  }


def _entries(checkpoints):
  return sorted(os.listdir(checkpoints.directory))


@pytest.mark.isolated  # Process-wide file size limit; see conftest.
def test_failed_background_write_names_its_step_and_keeps_earlier(tmp_path):
  checkpoints = checkpoint_lib.Checkpoints(str(tmp_path))
  checkpoints.save(2, _state(2))
  checkpoints.wait()
  with file_size_limit():
    assert checkpoints.save(
      4, _state(4)
    )  # Asynchronous: returns before it fails.
    # The failure surfaces on the next save and names step 4, not step 6.
    with pytest.raises(checkpoint_lib.CheckpointWriteError) as e:
      checkpoints.save(6, _state(6))
  message = str(e.value)
  assert message.startswith(
    f'Writing checkpoint step 4 to {checkpoints.directory} failed:'
  )
  assert 'File too large' in message  # The underlying OS error (EFBIG).
  assert 'latest good: step 2' in message and 'Free disk space' in message
  # Step 4 was never taken as a checkpoint; step 6 never started.
  assert checkpoints.latest_step() == 2
  assert '4' not in _entries(checkpoints) and '6' not in _entries(checkpoints)
  checkpoints.close()

  # The rerun: the half-written step is not a checkpoint, step 2 restores,
  # step 4 is written again and the leftover of the failed write is removed.
  checkpoints = checkpoint_lib.Checkpoints(str(tmp_path))
  state, _, step = checkpoints.restore_latest_good(_state(0))
  assert step == 2
  np.testing.assert_array_equal(state['w'], _state(2)['w'])
  checkpoints.save(4, _state(4))
  checkpoints.close()
  assert _entries(checkpoints) == ['2', '4']


@pytest.mark.isolated  # Process-wide file size limit; see conftest.
def test_failed_last_write_is_raised_by_close(tmp_path):
  checkpoints = checkpoint_lib.Checkpoints(str(tmp_path))
  with file_size_limit():
    checkpoints.save(2, _state(2))
    with pytest.raises(
      checkpoint_lib.CheckpointWriteError,
      match='step 2 .* no earlier checkpoint',
    ):
      checkpoints.close()
  rerun = checkpoint_lib.Checkpoints(str(tmp_path))
  assert rerun.latest_step() is None
  rerun.close()


@pytest.mark.isolated  # Process-wide file size limit; see conftest.
def test_failed_write_while_another_error_propagates_is_logged(
  tmp_path, caplog
):
  checkpoints = checkpoint_lib.Checkpoints(str(tmp_path))
  with file_size_limit():
    checkpoints.save(2, _state(2))
    checkpoints.close(raise_errors=False)  # Does not mask the first error.
  assert 'Writing checkpoint step 2' in caplog.text


def test_write_that_cannot_start_names_step_and_os_error(tmp_path, monkeypatch):
  checkpoints = checkpoint_lib.Checkpoints(str(tmp_path))
  checkpoints.save(2, _state(2))
  checkpoints.wait()

  def no_space(*args, **kwargs):
    raise OSError(
      errno.ENOSPC,
      os.strerror(errno.ENOSPC),
      os.path.join(checkpoints.directory, '4.orbax-checkpoint-tmp'),
    )

  monkeypatch.setattr(checkpoints._manager, 'save', no_space)  # pylint: disable=protected-access
  with pytest.raises(checkpoint_lib.CheckpointWriteError) as e:
    checkpoints.save(4, _state(4))
  assert isinstance(e.value, OSError)
  assert isinstance(e.value.__cause__, OSError)
  message = str(e.value)
  assert f'step 4 to {checkpoints.directory} failed' in message
  assert '[Errno 28] No space left on device' in message
  assert 'Free disk space' in message and 'latest good: step 2' in message
  monkeypatch.undo()
  checkpoints.close()
  assert _entries(checkpoints) == ['2']


def test_close_waits_for_the_cleanup_of_a_failed_writes_leftover(tmp_path):
  # A write killed or failed mid-way leaves a tmp folder; the next manager
  # removes it in a background thread, which close() must not leave running.
  leftover = tmp_path / 'checkpoints' / '4.orbax-checkpoint-tmp' / 'state'
  leftover.mkdir(parents=True)
  for i in range(200):
    (leftover / f'part{i}').write_bytes(b'x' * 1000)
  before = set(threading.enumerate())
  checkpoints = checkpoint_lib.Checkpoints(str(tmp_path))
  assert checkpoints.latest_step() is None
  checkpoints.close()
  assert _entries(checkpoints) == []
  # Orbax's worker threads; idle executor threads ('asyncio_0') exit on their own.
  assert [
    t.name
    for t in set(threading.enumerate()) - before
    if type(t).__name__ == '_SignalingThread'
  ] == []
