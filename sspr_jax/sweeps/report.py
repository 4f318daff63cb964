"""One report over many runs: their metrics in one table, their curves in one plot.

    python -m sspr_jax.sweeps.report ROOT/a ROOT/b ... --out DIR

Reads each workdir's metrics.json (written by the evaluate mode) and writes
DIR/report.md: a table with a row per run and backbone (baselines included),
and the full-gallery cosine mAP per checkpoint step of every run in one
figure (DIR/map_over_steps.png, with the periodic `eval/` values of each
run's metrics.jsonl), the legend naming the runs. A run's name is its
folder's name.
"""

from __future__ import annotations

import argparse
import collections
import difflib
import json
import os
import re
import sys

from sspr_jax.core import results as results_lib
from sspr_jax.evaluate import plots
from sspr_jax.evaluate import report as evaluation_report


class MissingMetrics(FileNotFoundError):
  """A workdir without a readable metrics.json."""


class UnknownColumn(ValueError):
  """A `--columns` key that no run's metrics.json has."""


def load(workdir: str) -> list[dict]:
  """The results of WORKDIR/metrics.json, with runs pointing at `workdir`.

  The evaluate mode records the absolute folder of each evaluated run; a
  workdir copied elsewhere (from a cluster) still finds its metrics.jsonl.
  """
  path = os.path.join(workdir, 'metrics.json')
  entry = results_lib.read(workdir).get('evaluate')
  if isinstance(entry, dict) and not entry.get('complete'):
    raise MissingMetrics(
      f'{workdir}: its evaluation is incomplete (results.json; stopped while '
      'writing?): run its evaluate command again.'
    )
  try:
    with open(path) as f:
      results = json.load(f)
  except FileNotFoundError:
    raise MissingMetrics(
      f'{workdir}: no metrics.json (the evaluate mode writes it: is the run '
      "finished, and does its config.mode end with 'evaluate'?)."
    ) from None
  except ValueError as e:
    raise MissingMetrics(f'{path}: not valid JSON ({e}).') from None
  here = os.path.abspath(workdir)
  for r in results:
    run = r.get('run')
    if run and run != 'baseline' and not os.path.isdir(run):
      if os.path.basename(os.path.normpath(run)) == os.path.basename(here):
        r['run'] = here
  return results


def run_names(workdirs) -> list[str]:
  """Each workdir's folder name; the path given where names repeat."""
  names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
  counts = collections.Counter(names)
  return [n if counts[n] == 1 else w for n, w in zip(names, workdirs)]


def default_columns(results) -> list[str]:
  """The keys a single run's report shows (the evaluators' `columns`).

  metrics.json has more (per-query mAP, top-5, CV accuracy, split sizes):
  every full-gallery mAP, average-gallery mAP and top-1 of the first score,
  kNN accuracy, and the few-label heads' accuracy and mAP.
  """
  keys = []
  for r in results:
    keys += [k for k in r['metrics'] if k not in keys]
  first = next(
    (k[len('full_map/') :] for k in keys if k.startswith('full_map/')), None
  )
  shown = {f'average_map/{first}', f'full_top1/{first}', 'strict_knn_accuracy'}

  def group(key):  # The single-run report's order; None: not shown.
    if key.startswith('full_map/'):
      return 0
    if key in shown:
      return ['average_map', 'full_top1', 'strict_knn_accuracy'].index(
        key.split('/')[0]
      ) + 1
    return 4 if re.fullmatch(r'[^/]+/[^/]+/(accuracy|map)', key) else None

  return sorted((k for k in keys if group(k) is not None), key=group)


def _curve_results(named_results) -> list[dict]:
  """Results for the curve; a baseline that differs between runs per run."""
  values = collections.defaultdict(set)
  for _, r in named_results:
    if r.get('step') is None:
      values[r['name']].add(json.dumps(r['metrics'], sort_keys=True))
  out = []
  for name, r in named_results:
    if r.get('step') is None and len(values[r['name']]) > 1:
      r = dict(r, name=f'{r["name"]}, {name}')
    out.append(r)
  return out


def write(workdirs, out_dir: str, columns=None, left_out=()) -> str:
  """Writes OUT_DIR/report.md (and the figure) over `workdirs`; its text.

  `columns`: metric keys of the table (default: those of a single run's
  report, `default_columns`); `left_out`: lines naming runs not in the report (failed runs).

  Raises:
    MissingMetrics: a workdir has no metrics.json (before anything is written).
    UnknownColumn: no run has one of `columns` (before anything is written).
  """
  names = run_names(workdirs)
  named = [(n, r) for n, w in zip(names, workdirs) for r in load(w)]
  results = [r for _, r in named]
  columns = list(columns or default_columns(results))
  known = {k for r in results for k in r['metrics']}
  unknown = [c for c in columns if c not in known]
  if unknown:  # Before anything is written: a misspelt key is no column of -.
    close = difflib.get_close_matches(unknown[0], sorted(known), n=3)
    raise UnknownColumn(
      f'--columns: no run has {unknown[0]!r}'
      + (f'; did you mean {", ".join(close)}?' if close else '')
      + f' ({len(known)} keys in metrics.json, e.g. '
      + ', '.join(default_columns(results)[:3])
      + ').'
    )
  os.makedirs(out_dir, exist_ok=True)
  labels = {
    r['run']: n for n, r in named if r.get('run') not in (None, 'baseline')
  }
  # Staged and recorded in OUT_DIR/results.json: a kill leaves the previous
  # report whole, or a record that says it is not (core.results).
  with results_lib.Staging(out_dir, 'sweep_report') as stage:
    curve = plots.scores_over_steps(
      _curve_results(named),
      stage.path('map_over_steps.png'),
      labels=labels,
    )
    text = _text(named, names, workdirs, columns, left_out, curve, stage.root)
    with open(stage.path('report.md'), 'w') as f:
      f.write(text)
  return text


def _text(named, names, workdirs, columns, left_out, curve, out_dir) -> str:
  results = [r for _, r in named]
  text = f'# {len(workdirs)} runs on rack_crops\n\n'
  text += evaluation_report.table(results, columns, runs=[n for n, _ in named])
  text += '\n' + evaluation_report.NOTE + '\n'
  text += ''.join(f'\nNot in the table: {line}.\n' for line in left_out)
  text += '\nRuns:\n' + ''.join(
    f'- {n}: {os.path.abspath(w)}\n' for n, w in zip(names, workdirs)
  )
  if curve:
    title = 'Full-gallery cosine mAP per checkpoint'
    text += f'\n## {title}\n\n![{title}]({os.path.relpath(curve, out_dir)})\n'
  return text


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workdirs', nargs='+', help='Evaluated run folders.')
  parser.add_argument('--out', required=True, help='Where report.md goes.')
  parser.add_argument(
    '--columns',
    default='',
    help="Comma-separated metric keys (default: those of a single run's "
    'report), e.g. '
    'full_map/cosine,strict_knn_accuracy',
  )
  args = parser.parse_args(argv)
  columns = [c.strip() for c in args.columns.split(',') if c.strip()]
  try:
    print(write(args.workdirs, args.out, columns=columns))
  except (MissingMetrics, UnknownColumn) as e:
    sys.exit(str(e))
  print(f'Wrote: {os.path.abspath(os.path.join(args.out, "report.md"))}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
