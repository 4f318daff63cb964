"""Runs a sweep: every run of a sweep file with main.py, then one report.

    python -m sspr_jax.sweeps.run --sweep configs/sweeps/moco_batch.py \
        --workdir ROOT [--config.key=value ...] [--print_commands]

Every run's overrides are checked first, as main.py checks them (a bad key
or value stops the sweep before any run, naming the run). Then each run is a
main.py process into ROOT/<run name>, one after the other: a crashing run
is reported and the sweep goes on; its output is also kept in
ROOT/<run name>/sweep.log. A run is skipped only when its workdir's
results.json records its last mode complete with this run's resolved config
(`core.results`); any other resumes from its checkpoints, as main.py does,
and a changed run trains or evaluates again. A run whose workdir another
process holds is "running elsewhere". Then ROOT/report.md compares the
complete runs (`sspr_jax/sweeps/report.py`), unless a run is running
elsewhere (the report would be partial); the exit status is 1 unless every
run is complete.
--config.key=value arguments apply to every run. --print_commands prints one
main.py command per run (for a cluster scheduler) and exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import sspr_jax
from sspr_jax.core import config_check
from sspr_jax.core import results
from sspr_jax.core import workdir_lock
from sspr_jax.sweeps import report
from sspr_jax.sweeps import spec

RUNNING_ELSEWHERE = 'running elsewhere'
MAIN = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(sspr_jax.__file__))),
  'main.py',
)


def is_complete(config, workdir: str) -> bool:
  """Whether the run is done: its last mode's result recorded complete, by
  this resolved config (a sweep file changed since runs it again)."""
  last = config_check.split_names(config.mode)[-1]
  return results.is_complete(workdir, last, config)


class _Interrupt:
  """Passes SIGTERM/SIGINT on to the running run, then stops the sweep."""

  def __init__(self):
    self.requested = False
    self.child = None

  def __call__(self, signum, frame):  # pylint: disable=unused-argument
    self.requested = True
    if self.child is not None and self.child.poll() is None:
      self.child.send_signal(signal.SIGTERM)  # It checkpoints and exits.


def launch(run: spec.Run, workdir: str, interrupt=None) -> int:
  """Runs `run` with main.py into `workdir`; its output also to sweep.log."""
  os.makedirs(workdir, exist_ok=True)
  argv = run.command(workdir, python=sys.executable, main=MAIN)
  with open(os.path.join(workdir, 'sweep.log'), 'ab') as log:
    child = subprocess.Popen(
      argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    if interrupt is not None:
      interrupt.child = child
    # Chunks, not lines: progress bars rewrite their line with \r.
    for chunk in iter(lambda: child.stdout.read1(1 << 16), b''):
      sys.stdout.buffer.write(chunk)
      sys.stdout.flush()
      log.write(chunk)
    return child.wait()


def run_sweep(runs: list[spec.Run], configs, root: str) -> list[tuple]:
  """Runs each run into ROOT/<name>; [(run, status, seconds)].

  Status: 'done', 'skipped' (complete before), 'failed (exit N)',
  'running elsewhere' (another process holds its workdir) or 'interrupted'.
  """
  interrupt = _Interrupt()
  previous = {
    s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)
  }
  outcomes = []
  try:
    for i, (run, config) in enumerate(zip(runs, configs)):
      workdir = os.path.join(root, run.name)
      head = f'[sweep {i + 1}/{len(runs)}] {run.name}'
      if interrupt.requested:
        break
      if is_complete(config, workdir):
        print(f'{head}: complete (results.json), skipped.', flush=True)
        outcomes.append((run, 'skipped', 0.0))
        continue
      elsewhere = workdir_lock.holder(workdir)
      if elsewhere:
        print(f'{head}: running elsewhere, by {elsewhere}.', flush=True)
        outcomes.append((run, RUNNING_ELSEWHERE, 0.0))
        continue
      if results.read(workdir):
        print(
          f'{head}: not complete with this config (results.json): resuming it.',
          flush=True,
        )
      print(f'{head}: {spec.command_line(run, root)}', flush=True)
      start = time.time()
      code = launch(run, workdir, interrupt)
      seconds = time.time() - start
      if interrupt.requested:
        status = 'interrupted'
      else:
        status = 'done' if code == 0 else f'failed (exit {code})'
      print(f'{head}: {status} after {seconds:.0f} s.', flush=True)
      outcomes.append((run, status, seconds))
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
  return outcomes


def summary(outcomes, root: str, total: int) -> str:
  lines = [f'Sweep {root}: {len(outcomes)} of {total} runs']
  for run, status, seconds in outcomes:
    took = f', {seconds:.0f} s' if seconds else ''
    lines.append(f'  {run.name:<30} {status}{took}')
  return '\n'.join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__.split('\n')[0],
    epilog='Other arguments: --config.key=value, applied to every run.',
  )
  parser.add_argument('--sweep', required=True, help='configs/sweeps/<x>.py')
  parser.add_argument('--workdir', required=True, help='The sweep root.')
  parser.add_argument(
    '--print_commands',
    action='store_true',
    help='Print one main.py command per run and exit.',
  )
  args, extra = parser.parse_known_args(argv)
  try:
    runs = spec.load(args.sweep, extra)
    configs = spec.check(runs)
  except config_check.ConfigError as e:
    sys.exit(f'{e}\nNo run started.')
  if args.print_commands:
    for run in runs:
      print(spec.command_line(run, args.workdir))
    return 0
  print(f'Sweep {args.sweep}: {len(runs)} runs into {args.workdir}.')
  outcomes = run_sweep(runs, configs, args.workdir)
  complete = {
    run.name
    for run, config in zip(runs, configs)
    if is_complete(config, os.path.join(args.workdir, run.name))
  }
  evaluated = [
    os.path.join(args.workdir, run.name)
    for run, config in zip(runs, configs)
    if run.name in complete
    and results.is_complete(
      os.path.join(args.workdir, run.name), 'evaluate', config
    )
  ]
  elsewhere = [r.name for r, s, _ in outcomes if s == RUNNING_ELSEWHERE]
  if elsewhere:
    print(
      f'No report: {", ".join(elsewhere)} running elsewhere; run the sweep '
      'again once they finish.'
    )
  elif evaluated:
    left_out = [
      f'{run.name} ({status})'
      for run, status, _ in outcomes
      if run.name not in complete
    ]
    report.write(evaluated, args.workdir, left_out=left_out)
    print(f'Wrote the report: {os.path.abspath(args.workdir)}/report.md')
  print(summary(outcomes, args.workdir, len(runs)))
  return 0 if len(complete) == len(runs) else 1


if __name__ == '__main__':
  sys.exit(main())
