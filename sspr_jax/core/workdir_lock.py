"""One run per workdir: an OS lock on WORKDIR/.lock held for the run's life.

`fcntl.flock` is released by the kernel whenever the holder's file is closed,
including when the process dies (SIGKILL, OOM), so a lock file left behind by
a dead run is free: only a process holding the flock counts. The file keeps
the holder's pid, host, start time and command for the refusal message; it is
never deleted, because a process that opened it just before the delete would
lock an orphaned inode while a third locked a new file.

Process `i > 0` of a multi-process run locks its own `.lock.process<i>`, so
the processes of one run never block each other while each process of a
second, identical run is refused.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

# Filesystems without flock support (some FUSE or NFS setups) answer these.
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
_MAX_COMMAND_CHARS = 200


class WorkdirInUse(RuntimeError):
  """Another live process holds the workdir's lock."""


def lock_path(workdir: str, process_index: int = 0) -> str:
  name = '.lock' if process_index == 0 else f'.lock.process{process_index}'
  return os.path.join(workdir, name)


def _holder_text(fd: int) -> str:
  """The holder as the message names it, from the lock file's content."""
  # The holder writes its details just after it locks: wait a moment for them.
  for _ in range(20):
    try:
      holder = json.loads(os.pread(fd, 1 << 16, 0))
    except ValueError:
      holder = None
    if isinstance(holder, dict):
      break
    time.sleep(0.05)
  else:
    return 'another process (no details in the lock file)'
  command = holder.get('command', '')
  if len(command) > _MAX_COMMAND_CHARS:
    command = command[: _MAX_COMMAND_CHARS - 3] + '...'
  started = datetime.datetime.fromtimestamp(holder.get('started', 0))
  return (
    f'process {holder.get("pid")} on host {holder.get("host")} since '
    f'{started:%Y-%m-%d %H:%M:%S} (started with {command})'
  )


def holder(workdir: str) -> str | None:
  """Who holds `workdir` (as WorkdirInUse names it), or None if free."""
  path = lock_path(os.path.abspath(os.path.expanduser(workdir)))
  try:
    fd = os.open(path, os.O_RDWR)
  except FileNotFoundError:
    return None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return _holder_text(fd)
  except OSError as e:
    if e.errno not in _UNSUPPORTED:
      raise
    return None
  else:
    fcntl.flock(fd, fcntl.LOCK_UN)
    return None
  finally:
    os.close(fd)


@contextlib.contextmanager
def hold(workdir: str, process_index: int = 0) -> Iterator[str]:
  """Locks `workdir` (created if missing) for the `with` body.

  Yields the lock file's path.

  Raises:
    WorkdirInUse: at once, naming the holder, if a live process holds it.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  path = lock_path(workdir, process_index)
  # No O_TRUNC: the holder's details must survive a refused open.
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      locked = True
    except BlockingIOError:
      raise WorkdirInUse(
        f'WORKDIR {workdir} is in use by {_holder_text(fd)}; wait for it or '
        'use another --workdir.'
      ) from None
    except OSError as e:
      if e.errno not in _UNSUPPORTED:
        raise
      log.warning('%s: no file locks here (%s); not locked.', path, e)
      locked = False
    if locked:
      holder = {
        'pid': os.getpid(),
        'host': socket.gethostname(),
        'started': time.time(),
        'command': shlex.join(sys.argv),
      }
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(holder).encode() + b'\n', 0)
    owner = os.getpid()
    try:
      yield path
    finally:
      # A forked child leaving this block must not unlock its parent's lock
      # (they share the open file).
      if locked and os.getpid() == owner:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
