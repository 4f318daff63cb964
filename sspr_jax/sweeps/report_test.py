"""The multi-run report: one table over runs, one curve per run, clear errors."""

import json

import pytest

from sspr_jax.evaluate import plots
from sspr_jax.sweeps import report


def _evaluated_run(root, name, value, baseline, moved=False):
  """A workdir as the evaluate mode leaves it (metrics.json, metrics.jsonl)."""
  workdir = root / name
  workdir.mkdir(parents=True)
  # A run evaluated elsewhere (a cluster) records that absolute path.
  run = f'/cluster/runs/{name}' if moved else str(workdir)
  results = [
    {
      'run': run,
      'name': 'moco step 4',
      'step': 4,
      'metrics': {
        'full_map/cosine': value,
        'full_map_per_query/cosine': value,  # Not a column by default.
        'strict_knn_accuracy': 0.5,
        'strict_split_sizes': [4, 2],
        'strict/mlp/accuracy': 0.25,
        'strict/mlp/cv_accuracy': 0.3,
      },
    },
    {
      'run': 'baseline',
      'name': 'random init',
      'step': None,
      'metrics': {'full_map/cosine': baseline},
    },
  ]
  (workdir / 'metrics.json').write_text(json.dumps(results))
  (workdir / 'metrics.jsonl').write_text(
    json.dumps({'step': 2, 'eval/full_map/cosine': value / 2}) + '\n'
  )
  return str(workdir)


def test_report_has_a_row_per_run_and_backbone_and_one_curve_per_run(
  tmp_path, monkeypatch
):
  a = _evaluated_run(tmp_path, 'batch_size=32', 0.4, 0.2)
  b = _evaluated_run(tmp_path, 'batch_size=64', 0.5, 0.25, moved=True)
  figures = []

  def recorded(results, path, metric='full_map/cosine', labels=None):
    fig = plots.scores_over_steps_figure(results, metric, labels)
    lines = fig.axes[0].get_lines()
    figures.append({line.get_label(): list(line.get_xdata()) for line in lines})
    return original(results, path, metric, labels)

  original = plots.scores_over_steps
  monkeypatch.setattr(plots, 'scores_over_steps', recorded)
  text = report.write([a, b], str(tmp_path / 'out'))
  assert (
    '| run | model | full_map/cosine | strict_knn_accuracy | '
    'strict/mlp/accuracy |\n' in text
  )
  assert '| batch_size=32 | moco step 4 | 40.00 | 50.00 | 25.00 |' in text
  assert '| batch_size=64 | moco step 4 | 50.00 | 50.00 | 25.00 |' in text
  assert '| batch_size=64 | random init | 25.00 | - | - |' in text
  assert (tmp_path / 'out' / 'report.md').read_text() == text
  assert (tmp_path / 'out' / 'map_over_steps.png').stat().st_size > 1000
  assert '![Full-gallery cosine mAP per checkpoint](map_over_steps.png)' in text
  # Legend = run names; the periodic eval/ value at step 2 found for both,
  # the moved run's too; random init differs between runs: one line each.
  ((curves),) = figures
  assert curves['batch_size=32'] == [2, 4]
  assert curves['batch_size=64'] == [2, 4]
  assert {'random init, batch_size=32 (baseline)'} <= set(curves)


def test_columns_can_be_chosen(tmp_path):
  a = _evaluated_run(tmp_path, 'a', 0.4, 0.2)
  text = report.write([a], str(tmp_path), columns=['strict_knn_accuracy'])
  assert '| run | model | strict_knn_accuracy |' in text


def test_a_workdir_without_metrics_is_a_one_line_error(tmp_path, capsys):
  a = _evaluated_run(tmp_path, 'a', 0.4, 0.2)
  (tmp_path / 'unfinished').mkdir()
  with pytest.raises(SystemExit) as exit_info:
    report.main([a, str(tmp_path / 'unfinished'), '--out', str(tmp_path / 'o')])
  message = str(exit_info.value.code)
  assert message == (
    f'{tmp_path}/unfinished: no metrics.json (the evaluate mode writes it: '
    "is the run finished, and does its config.mode end with 'evaluate'?)."
  )
  assert not (tmp_path / 'o').exists()
  (tmp_path / 'unfinished' / 'metrics.json').write_text('{')
  with pytest.raises(report.MissingMetrics, match='not valid JSON'):
    report.load(str(tmp_path / 'unfinished'))


def test_a_misspelt_column_is_a_one_line_error(tmp_path):
  a = _evaluated_run(tmp_path, 'a', 0.4, 0.2)
  out = tmp_path / 'o'
  with pytest.raises(SystemExit) as exit_info:
    report.main([a, '--out', str(out), '--columns', 'strict_knn_acuracy'])
  message = str(exit_info.value.code)
  assert message.startswith(
    "--columns: no run has 'strict_knn_acuracy'; did you mean "
    'strict_knn_accuracy'
  )
  assert '\n' not in message and not out.exists()
