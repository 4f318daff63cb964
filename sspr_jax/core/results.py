"""A mode's result files: staged, moved into place, recorded last.

WORKDIR/results.json says, per mode, whether the files it lists are one
complete result and which resolved config produced them:

    {"evaluate": {"complete": true, "config": {...},
                  "files": ["metrics.json", "evaluation/00_x.npz", ...],
                  "finished": "2026-12-08T10:00:00+00:00"}}

A mode writes its files into a staging folder (`Staging`), so a kill while it
computes leaves the previous result and its record as they were. On success
the record is first marked incomplete, the files are moved in one
`os.replace` each, the previous result's files that the new one lacks are
deleted (stale annotated photos, say), and the record is marked complete
last. A kill at any point leaves either the old complete result, the new
complete result, or a record that says "complete": false.

`fault_point(name)` kills the process with SIGKILL when the environment
variable SSPR_FAULT names it: the fault-injection tests use it.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import tempfile

import ml_collections

RECORD = 'results.json'
FAULT_VARIABLE = 'SSPR_FAULT'


def fault_point(name: str) -> None:
  """SIGKILLs this process when $SSPR_FAULT is `name` (tests only)."""
  if os.environ.get(FAULT_VARIABLE) == name:
    os.kill(os.getpid(), signal.SIGKILL)


def config_record(config: ml_collections.ConfigDict | None):
  """The config as results.json keeps it: plain JSON, keys sorted."""
  if config is None:
    return None
  return json.loads(config.to_json_best_effort(sort_keys=True))


def write_text(path: str, text: str) -> None:
  """Writes `path` whole or not at all: a temporary sibling, then a rename."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(
    dir=folder, prefix=f'.{os.path.basename(path)}.', suffix='.tmp'
  )
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def read(folder: str) -> dict:
  """WORKDIR/results.json; {} when absent or unreadable (nothing complete)."""
  try:
    with open(os.path.join(folder, RECORD)) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return {}
  return record if isinstance(record, dict) else {}


def is_complete(folder: str, mode: str, config=None) -> bool:
  """Whether `mode`'s result in `folder` is complete (and, given `config`,
  was produced by that resolved config)."""
  entry = read(folder).get(mode)
  if not isinstance(entry, dict) or entry.get('complete') is not True:
    return False
  return config is None or entry.get('config') == config_record(config)


def _write_entry(folder: str, mode: str, entry: dict) -> None:
  record = read(folder)
  record[mode] = entry
  write_text(
    os.path.join(folder, RECORD), json.dumps(record, indent=1, sort_keys=True)
  )


def mark(folder: str, mode: str, config, complete: bool, files=()) -> None:
  """Records `mode` (in)complete, for a mode whose files are written in
  place as it goes (pre-training's checkpoints and metrics)."""
  entry = {
    'complete': complete,
    'config': config_record(config),
    'files': sorted(files),
  }
  if complete:
    entry['finished'] = _now()
  _write_entry(folder, mode, entry)


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
    timespec='seconds'
  )


def _files_under(root: str) -> list[str]:
  return sorted(
    os.path.relpath(os.path.join(d, n), root)
    for d, _, names in os.walk(root)
    for n in names
  )


class Staging:
  """Stages a mode's files, then puts them in place as one result.

      with results.Staging(workdir, 'evaluate', config, owned=('evaluation',)) as s:
        write(s.path('metrics.json'))   # paths relative to `folder`

  `owned`: folders (relative to `folder`) that only this mode writes: every
  file in them that the new result lacks is deleted when it commits, also
  files of versions that kept no record. An exception leaves the previous
  result as it was and removes the staged files.
  """

  def __init__(self, folder: str, mode: str, config=None, *, owned=()):
    self.folder = folder
    self.mode = mode
    self.config = config
    self.owned = tuple(owned)
    self.root = os.path.join(folder, f'.{mode}.staging')

  def __enter__(self) -> Staging:
    shutil.rmtree(self.root, ignore_errors=True)  # A killed run's leftovers.
    os.makedirs(self.root)
    return self

  def __exit__(self, kind, value, traceback) -> bool:
    if kind is None:
      self.commit()
    else:
      shutil.rmtree(self.root, ignore_errors=True)
    return False

  def path(self, *parts: str) -> str:
    """Where to write the result file `folder/<parts>` for now."""
    path = os.path.join(self.root, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path

  def final(self, staged: str) -> str:
    """The path a staged file will have once committed."""
    return os.path.join(self.folder, os.path.relpath(staged, self.root))

  def commit(self) -> list[str]:
    """Moves the staged files into `folder`; returns their relative paths."""
    new = _files_under(self.root)
    entry = read(self.folder).get(self.mode)
    old = entry.get('files', []) if isinstance(entry, dict) else []
    old = [f for f in old if isinstance(f, str)]
    # Incomplete first, listing both sets: a kill below leaves a record that
    # says so and still names every file it may have left.
    _write_entry(
      self.folder,
      self.mode,
      {
        'complete': False,
        'config': config_record(self.config),
        'files': sorted(set(old) | set(new)),
      },
    )
    fault_point('results:marked_incomplete')
    keep = set(new)
    stale = {f for f in old if f not in keep}
    for owned in self.owned:
      top = os.path.join(self.folder, owned)
      if os.path.isdir(top):
        stale |= {
          f
          for f in (os.path.join(owned, g) for g in _files_under(top))
          if f not in keep
        }
    for rel in sorted(stale):
      _remove(os.path.join(self.folder, rel))
    for i, rel in enumerate(new):
      target = os.path.join(self.folder, rel)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      os.replace(os.path.join(self.root, rel), target)
      if i == len(new) // 2:
        fault_point('results:half_moved')
    shutil.rmtree(self.root, ignore_errors=True)
    _write_entry(
      self.folder,
      self.mode,
      {
        'complete': True,
        'config': config_record(self.config),
        'files': new,
        'finished': _now(),
      },
    )
    return new


def _remove(path: str) -> None:
  try:
    os.remove(path)
  except FileNotFoundError:
    pass
