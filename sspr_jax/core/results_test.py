"""Staged results: a folder holds one complete result or says it does not."""

import json
import os

import ml_collections
import pytest

from sspr_jax.core import results


class Killed(BaseException):
  """Stands for SIGKILL at a fault point: no handler may tidy up."""


def config(seed=0):
  return ml_collections.ConfigDict(dict(mode='evaluate', seed=seed))


def stage_files(folder, files, conf, owned=('evaluation',)):
  with results.Staging(str(folder), 'evaluate', conf, owned=owned) as s:
    for rel, text in files.items():
      with open(s.path(*rel.split('/')), 'w') as f:
        f.write(text)


def tree(folder) -> dict:
  """{relative path: text} of every file but results.json."""
  out = {}
  for d, _, names in os.walk(folder):
    for n in names:
      rel = os.path.relpath(os.path.join(d, n), folder)
      if rel != results.RECORD:
        out[rel] = open(os.path.join(d, n)).read()
  return out


FIRST = {
  'metrics.json': '1',
  'report.md': 'one',
  'evaluation/00_a.npz': 'a',
  'evaluation/01_b.npz': 'b',
}
SECOND = {'metrics.json': '2', 'report.md': 'two', 'evaluation/00_a.npz': 'A'}


def test_commit_moves_the_files_and_records_them_complete_last(tmp_path):
  stage_files(tmp_path, FIRST, config())
  assert tree(tmp_path) == FIRST
  record = results.read(str(tmp_path))['evaluate']
  assert record['complete'] is True and record['files'] == sorted(FIRST)
  assert record['config'] == {'mode': 'evaluate', 'seed': 0}
  assert results.is_complete(str(tmp_path), 'evaluate', config())
  assert not results.is_complete(str(tmp_path), 'evaluate', config(seed=1))
  assert not results.is_complete(str(tmp_path), 'recognize')


def test_a_new_result_drops_the_old_ones_files_it_lacks(tmp_path):
  # Also a file of an earlier version that kept no record, in an owned folder.
  (tmp_path / 'evaluation').mkdir()
  (tmp_path / 'evaluation' / 'old.png').write_text('x')
  (tmp_path / 'notes.txt').write_text('mine')  # Not the mode's: kept.
  stage_files(tmp_path, FIRST, config())
  stage_files(tmp_path, SECOND, config(seed=1))
  assert tree(tmp_path) == dict(SECOND, **{'notes.txt': 'mine'})
  assert results.is_complete(str(tmp_path), 'evaluate', config(seed=1))


def test_an_error_while_computing_keeps_the_previous_result(tmp_path):
  stage_files(tmp_path, FIRST, config())
  with pytest.raises(RuntimeError):
    with results.Staging(str(tmp_path), 'evaluate', config(seed=1)) as s:
      open(s.path('metrics.json'), 'w').write('half')
      raise RuntimeError('crash')
  assert tree(tmp_path) == FIRST
  assert results.is_complete(str(tmp_path), 'evaluate', config())


@pytest.mark.parametrize(
  'point', ['results:marked_incomplete', 'results:half_moved']
)
def test_a_kill_while_committing_is_recorded_and_the_rerun_completes_it(
  tmp_path, monkeypatch, point
):
  stage_files(tmp_path, FIRST, config())

  def fault(name):
    if name == point:
      raise Killed

  monkeypatch.setattr(results, 'fault_point', fault)
  with pytest.raises(Killed):
    stage_files(tmp_path, SECOND, config(seed=1))
  record = results.read(str(tmp_path))['evaluate']
  assert record['complete'] is False
  assert set(record['files']) >= set(FIRST) | set(SECOND)  # All it may hold.
  assert not results.is_complete(str(tmp_path), 'evaluate')
  monkeypatch.undo()
  stage_files(tmp_path, SECOND, config(seed=1))  # The rerun.
  assert tree(tmp_path) == SECOND
  assert results.is_complete(str(tmp_path), 'evaluate', config(seed=1))


def test_an_unreadable_record_means_nothing_is_complete(tmp_path):
  (tmp_path / results.RECORD).write_text('{"evaluate": {"complete": tr')
  assert results.read(str(tmp_path)) == {}
  assert not results.is_complete(str(tmp_path), 'evaluate')
  stage_files(tmp_path, FIRST, config())  # And a new result replaces it.
  assert results.is_complete(str(tmp_path), 'evaluate', config())


def test_write_text_leaves_the_old_file_when_writing_fails(
  tmp_path, monkeypatch
):
  path = tmp_path / 'config.json'
  results.write_text(str(path), '{"a": 1}\n')

  def fail(*args):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(os, 'replace', fail)
  with pytest.raises(OSError, match='No space'):
    results.write_text(str(path), '{"a": 2}\n')
  assert json.loads(path.read_text()) == {'a': 1}
  assert os.listdir(tmp_path) == ['config.json']  # No temporary file left.


def test_mark_records_a_result_written_in_place(tmp_path):
  results.mark(str(tmp_path), 'pretrain', config(), complete=False)
  assert not results.is_complete(str(tmp_path), 'pretrain')
  results.mark(
    str(tmp_path), 'pretrain', config(), complete=True, files=['checkpoints']
  )
  assert results.is_complete(str(tmp_path), 'pretrain', config())
  stage_files(tmp_path, FIRST, config())  # Another mode's entry beside it.
  assert set(results.read(str(tmp_path))) == {'pretrain', 'evaluate'}
