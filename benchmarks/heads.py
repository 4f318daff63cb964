"""Few-label MLP heads at the thesis's convergence: sspr_jax vs scikit-learn.

The thesis grid-searched ``MLPClassifier(solver='lbfgs', max_iter=10_000)``
(hidden {32, 64, 128, (128, 64)} x alpha {0.01, 0.1}, 5-fold
``GridSearchCV``, refit on all train rows) on L2-normalised embeddings. This
runs, in one process on the same CPU:

1. sspr_jax's grid (``classifiers.cross_validate``) with each preset
   (``classifiers.HEAD_PRESETS``): seconds including compiles, the chosen
   grid point, CV and test accuracy, L-BFGS iterations;
2. scikit-learn: ``MLPClassifier`` fits of fold 0 of the same folds for
   ``--sklearn_points`` grid points, timed and extrapolated to GridSearchCV's
   8 points x 5 folds + the refit (the whole grid takes hours; the table
   says which fits ran);
3. scikit-learn's fit of the grid point sspr_jax chose, on all train rows:
   its test accuracy beside sspr_jax's refit of the same point.

Embeddings: ``--embeddings RUN/evaluation/<backbone>.npz`` (written by the
evaluate mode: ``features``, ``label``, ``origin``), split as
``few_label_eval`` splits it (``--split standard|strict``); without it,
synthetic random-init-like ones (pairwise cosines ~0.99) of the issue's
gallery's shape (1,643 crops, 400 classes, D = 2,048).

    python benchmarks/heads.py --embeddings /tmp/eval/evaluation/random_init.npz
    python benchmarks/heads.py --smoke   # tiny, for the test
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

SMOKE = dict(n=150, dim=24, num_classes=10, sklearn_points=2)


def random_init_like(
  n: int = 1643, dim: int = 2048, num_classes: int = 400, seed: int = 0
):
  """Features dominated by one shared direction (cosines ~0.99), labels,
  origins (4 photos a class), like a random-init backbone's."""
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(n) % num_classes)
  origins = labels * 4 + rng.integers(0, 4, n)
  common = np.abs(rng.normal(size=dim)) + 1.0
  centres = rng.normal(size=(num_classes, dim))
  x = common + 0.05 * centres[labels] + 0.08 * rng.normal(size=(n, dim))
  return x.astype(np.float32), labels, origins


def load(path: str | None, smoke: bool):
  if path:
    data = np.load(path, allow_pickle=True)
    return data['features'], data['label'], data['origin'], path
  if smoke:
    n, dim, k = SMOKE['n'], SMOKE['dim'], SMOKE['num_classes']
    return (*random_init_like(n, dim, k), f'synthetic {n} x {dim}, {k} classes')
  return (*random_init_like(), 'synthetic random-init-like 1,643 x 2,048')


def split(x, labels, origins, which: str, seed: int = 0):
  """L2-normalised train/test parts, as few_label_eval makes them."""
  from sspr_jax.core import ops  # pylint: disable=g-import-not-at-top
  from sspr_jax.evaluate import splits  # pylint: disable=g-import-not-at-top

  if which == 'strict':
    train, test = splits.strict_origin_split(labels, origins)
  else:
    train, test = splits.standard_split(labels, seed=seed)
  x = ops.l2_normalize(np.asarray(x, np.float32))
  return x[train], labels[train], x[test], labels[test]


def sklearn_mlp(hidden, alpha, max_iter, seed=0):
  from sklearn.neural_network import MLPClassifier  # pylint: disable=g-import-not-at-top

  return MLPClassifier(
    hidden_layer_sizes=tuple(hidden),
    alpha=alpha,
    solver='lbfgs',
    max_iter=max_iter,
    random_state=seed,
  )


def best_blas_threads(train_x, train_y, hidden, alpha, choice: str) -> dict:
  """The BLAS thread count scikit-learn's fits run with: ``choice`` (a
  number), or 'auto': the faster of 1 and all cores on a 30-iteration fit of
  ``(hidden, alpha)`` (on small matrices and a busy machine OpenBLAS's
  threads made fits 7-10x slower here; on large ones they help)."""
  import os  # pylint: disable=g-import-not-at-top

  from threadpoolctl import threadpool_limits  # pylint: disable=g-import-not-at-top

  if choice != 'auto':
    return {'threads': int(choice), 'probe_ms_per_iteration': {}}
  probe = {}
  for threads in sorted({1, os.cpu_count() or 1}):
    clf = sklearn_mlp(hidden, alpha, 30)
    with threadpool_limits(threads), warnings.catch_warnings():
      warnings.simplefilter('ignore')
      start = time.perf_counter()
      clf.fit(train_x, train_y)
      probe[threads] = 1e3 * (time.perf_counter() - start) / clf.n_iter_
  best = min(probe, key=probe.get)
  print(f'  sklearn BLAS threads {best} (ms an iteration: {probe})', flush=True)
  return {'threads': best, 'probe_ms_per_iteration': probe}


def sklearn_grid_seconds(
  train_x,
  train_y,
  masks,
  grid,
  *,
  max_iter: int,
  points: int,
  all_folds: bool = False,
  deadline=None,
) -> dict:
  """GridSearchCV's time, from the fits of some grid points.

  ``grid``: [(hidden, alpha)]; ``points``: how many of it (spread over the
  architectures, alpha 0.01 first) or which (grid indices) are fitted, on
  fold 0's train rows or (``all_folds``) on every fold's. Estimate: a timed
  point costs its timed fits (fold 0's stands for all 5); untimed points cost
  the mean timed point; the refit costs the mean fit scaled by n_train /
  n_fold_train (L-BFGS cost per iteration is linear in the rows).
  """
  if isinstance(points, int):
    order = sorted(range(len(grid)), key=lambda i: (i % 2, i))[:points]
  else:
    order = list(points)
  folds = len(masks)
  timed, point_seconds = [], {}
  for i in order:
    if timed and deadline is not None and time.perf_counter() > deadline:
      break
    hidden, alpha = grid[i]
    fits = []
    for fold in range(folds) if all_folds else (0,):
      fold_train = np.flatnonzero(~masks[fold])
      clf = sklearn_mlp(hidden, alpha, max_iter)
      start = time.perf_counter()
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # Small classes, ConvergenceWarning.
        clf.fit(train_x[fold_train], train_y[fold_train])
      seconds = time.perf_counter() - start
      fits.append(
        {
          'hidden': list(hidden),
          'alpha': alpha,
          'fold': fold,
          'seconds': seconds,
          'n_iter': int(clf.n_iter_),
          'ms_per_iteration': 1e3 * seconds / max(clf.n_iter_, 1),
        }
      )
      print(f'  sklearn fold {fold} {fits[-1]}', flush=True)
    timed += fits
    point_seconds[i] = sum(f['seconds'] for f in fits) * folds / len(fits)
  mean_point = float(np.mean(list(point_seconds.values())))
  search = sum(point_seconds.get(i, mean_point) for i in range(len(grid)))
  n_fold_train = np.mean([np.sum(~m) for m in masks])
  refit = mean_point / folds * len(train_y) / n_fold_train
  return {
    'seconds': search + refit,
    'fits_timed': len(timed),
    'fits_total': len(grid) * folds + 1,
    'timed': timed,
  }


def parse_hidden(text: str | None):
  """'32;128,64' -> ((32,), (128, 64)); None or '' -> None (the thesis's)."""
  if not text:
    return None
  return tuple(
    tuple(int(v) for v in arch.split(',')) for arch in text.split(';')
  )


def same_fits(train_x, train_y, test_x, test_y, hidden, alphas, max_iter):
  """One architecture's fits on all train rows, one per alpha: sspr_jax's
  batch (rank-reduced, as ``cross_validate`` fits its refits) and
  scikit-learn's ``MLPClassifier`` one after the other, from their own
  random starts. Seconds, iterations, test accuracy per side."""
  import jax  # pylint: disable=g-import-not-at-top

  from sspr_jax.evaluate import classifiers  # pylint: disable=g-import-not-at-top

  classes, y = np.unique(train_y, return_inverse=True)
  start = time.perf_counter()
  x, tx = classifiers.rank_reduce(train_x, test_x)
  params0 = classifiers.init_params(
    jax.random.PRNGKey(0),
    (x.shape[1], *hidden, len(classes)),
    fan_in0=train_x.shape[1],
  )
  fits = classifiers.fit_batch(
    params0,
    x,
    y,
    np.ones((len(alphas), len(y)), np.float32),
    np.asarray(alphas, np.float32),
    max_iter=max_iter,
  )
  ours = {'seconds': time.perf_counter() - start, 'fits': []}
  for i, alpha in enumerate(alphas):
    params = jax.tree.map(lambda leaf, i=i: leaf[i], fits['params'])
    pred = classes[np.argmax(classifiers.predict_proba(params, tx), axis=1)]
    ours['fits'].append(
      {
        'alpha': alpha,
        'n_iter': int(fits['n_iter'][i]),
        'converged': bool(fits['converged'][i]),
        'test_accuracy': float(np.mean(pred == test_y)),
      }
    )
  theirs = {'seconds': 0.0, 'fits': []}
  for alpha in alphas:
    clf = sklearn_mlp(hidden, alpha, max_iter)
    start = time.perf_counter()
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      clf.fit(train_x, train_y)
    seconds = time.perf_counter() - start
    theirs['seconds'] += seconds
    theirs['fits'].append(
      {
        'alpha': alpha,
        'n_iter': int(clf.n_iter_),
        'seconds': seconds,
        'test_accuracy': float(clf.score(test_x, test_y)),
      }
    )
  out = {'hidden': list(hidden), 'ours': ours, 'sklearn': theirs}
  print(f'  same fits {out}', flush=True)
  return out


def run(args) -> dict:
  import jax  # pylint: disable=g-import-not-at-top

  from sspr_jax.evaluate import classifiers  # pylint: disable=g-import-not-at-top

  x, labels, origins, source = load(args.embeddings, args.smoke)
  train_x, train_y, test_x, test_y = split(x, labels, origins, args.split)
  masks, _ = classifiers.stratified_folds(
    np.unique(train_y, return_inverse=True)[1], 5
  )
  out = {
    'source': source,
    'split': args.split,
    'n_train': len(train_y),
    'n_test': len(test_y),
    'num_classes': int(len(np.unique(train_y))),
    'dim': int(x.shape[1]),
    'devices': str(jax.devices()),
    'presets': {},
  }
  print(
    f'{source}: {args.split} split, {out["n_train"]} train / '
    f'{out["n_test"]} test, {out["num_classes"]} classes, D = {out["dim"]}',
    flush=True,
  )
  hidden = parse_hidden(args.hidden)
  for arch in parse_hidden(args.same_fits) or ():
    out.setdefault('same_fits', []).append(
      same_fits(
        train_x,
        train_y,
        test_x,
        test_y,
        arch,
        classifiers.MLP_ALPHAS,
        classifiers.MAX_ITER,
      )
    )
  for name in filter(None, args.presets.split(',')):
    preset = dict(classifiers.HEAD_PRESETS[name])
    if hidden and name == 'thesis':
      preset['mlp_hidden'] = hidden
    cv = classifiers.cross_validate(
      train_x,
      train_y,
      test_x,
      head='mlp',
      val_masks=masks,
      hidden_sizes=preset['mlp_hidden'],
      max_iter=preset['max_iter'],
      tol=preset['tol'],
      progress=f'{name} preset',
    )
    m = classifiers.classification_metrics(
      test_y, cv['test_proba'], cv['classes']
    )
    fit_iterations = int(cv['fit_iterations'].sum())
    out['presets'][name] = {
      'hidden': [list(h) for h in preset['mlp_hidden']],
      'fit_iterations': fit_iterations,
      'ms_per_fit_iteration': 1e3 * cv['seconds'] / fit_iterations,
      'seconds': cv['seconds'],
      'best': cv['best'],
      'cv_accuracy': cv['cv_accuracy'],
      'test_accuracy': m['accuracy'],
      'test_map': m['map'],
      'n_iter_mean': cv['n_iter_mean'],
      'n_iter_max': cv['n_iter_max'],
      'num_capped': cv['num_capped'],
      'grid_points': len(cv['grid']),
      'refits': len(cv['refits']),
    }
    print(f'  {name}: {out["presets"][name]}', flush=True)
  max_iter = classifiers.MAX_ITER
  grid = [
    (h, a)
    for h in hidden or classifiers.MLP_HIDDEN
    for a in classifiers.MLP_ALPHAS
  ]
  points = SMOKE['sklearn_points'] if args.smoke else args.sklearn_points
  if isinstance(points, str):
    points = (
      [int(v) for v in points.split(',')] if ',' in points else int(points)
    )
  from threadpoolctl import threadpool_limits  # pylint: disable=g-import-not-at-top

  if points or args.sklearn_refit:
    out['sklearn_blas'] = best_blas_threads(
      train_x[~masks[0]], train_y[~masks[0]], *grid[0], args.sklearn_threads
    )
  threads = out.get('sklearn_blas', {}).get('threads')
  blas = lambda: threadpool_limits(threads)  # noqa: E731
  if points:
    with blas():
      sk = sklearn_grid_seconds(
        train_x,
        train_y,
        masks,
        grid,
        max_iter=max_iter,
        points=points,
        all_folds=args.sklearn_all_folds,
      )
    out['sklearn'] = sk
    thesis = out['presets'].get('thesis')
    if thesis:
      out['speedup'] = sk['seconds'] / thesis['seconds']
  if args.sklearn_refit and 'thesis' in out['presets']:
    best = out['presets']['thesis']['best']
    clf = sklearn_mlp(best['hidden'], best['alpha'], max_iter)
    start = time.perf_counter()
    with blas(), warnings.catch_warnings():
      warnings.simplefilter('ignore')
      clf.fit(train_x, train_y)
    out['sklearn_refit'] = {
      'hidden': list(best['hidden']),
      'alpha': best['alpha'],
      'seconds': time.perf_counter() - start,
      'n_iter': int(clf.n_iter_),
      'test_accuracy': float(clf.score(test_x, test_y)),
    }
    print(f'  sklearn refit {out["sklearn_refit"]}', flush=True)
  return out


def table(r: dict) -> str:
  lines = [
    f'{r["source"]}: {r["split"]} split, {r["n_train"]} train / '
    f'{r["n_test"]} test, {r["num_classes"]} classes, D = {r["dim"]}; '
    f'{r["devices"]}',
    '',
    '| heads | grid | seconds | chosen point | CV acc | test acc | '
    'L-BFGS iterations mean / max (capped fits) |',
    '|---|---|---|---|---|---|---|',
  ]
  for name, p in r['presets'].items():
    lines.append(
      f'| sspr_jax, {name} preset | {p["grid_points"]} points x 5 folds + '
      f'{p["refits"]} refit | {p["seconds"]:.1f} (incl. compiles; '
      f'{p["ms_per_fit_iteration"]:.1f} ms a fit-iteration) | {p["best"]} | '
      f'{100 * p["cv_accuracy"]:.2f} | {100 * p["test_accuracy"]:.2f} | '
      f'{p["n_iter_mean"]:.0f} / {p["n_iter_max"]} ({p["num_capped"]}) |'
    )
  sk = r.get('sklearn')
  if sk:
    iters = ', '.join(str(t['n_iter']) for t in sk['timed'])
    which = (
      'all folds' if len({t['fold'] for t in sk['timed']}) > 1 else 'fold 0'
    )
    ms = np.mean([t['ms_per_iteration'] for t in sk['timed']])
    lines.append(
      f'| scikit-learn GridSearchCV, max_iter 10,000 | '
      f'{(sk["fits_total"] - 1) // 5} points x 5 folds + refit | '
      f'~{sk["seconds"]:.0f} (extrapolated from {sk["fits_timed"]} of '
      f'{sk["fits_total"]} fits; {ms:.1f} ms an iteration, '
      f'{r["sklearn_blas"]["threads"]} BLAS threads) | | | | '
      f'{which}: {iters} |'
    )
  refit = r.get('sklearn_refit')
  if refit:
    lines.append(
      f'| scikit-learn, the chosen point on all train rows | 1 fit | '
      f'{refit["seconds"]:.1f} | {(tuple(refit["hidden"]), refit["alpha"])} '
      f'| | {100 * refit["test_accuracy"]:.2f} | {refit["n_iter"]} |'
    )
  for f in r.get('same_fits', ()):
    ours, theirs = f['ours'], f['sklearn']
    alphas = [o['alpha'] for o in ours['fits']]
    for label, side in (
      (
        f'sspr_jax, {tuple(f["hidden"])} x alphas {alphas} on all train rows '
        '(one batch)',
        ours,
      ),
      ('scikit-learn, the same fits', theirs),
    ):
      lines.append(
        f'| {label} | {len(side["fits"])} fits | {side["seconds"]:.1f} | | | '
        + ' / '.join(f'{100 * o["test_accuracy"]:.2f}' for o in side['fits'])
        + ' | '
        + ', '.join(str(o['n_iter']) for o in side['fits'])
        + ' |'
      )
    lines.append('')
    lines.append(
      f'same fits {tuple(f["hidden"])}: scikit-learn / sspr_jax time '
      f'{theirs["seconds"] / ours["seconds"]:.1f}x'
    )
  if 'speedup' in r:
    lines.append('')
    lines.append(
      f'speed-up at the thesis settings: {r["speedup"]:.1f}x GridSearchCV '
      '(its time extrapolated, ours measured whole)'
    )
  if refit and 'thesis' in r['presets']:
    diff = r['presets']['thesis']['test_accuracy'] - refit['test_accuracy']
    lines.append(
      f'test accuracy, same grid point: sspr_jax - scikit-learn = '
      f'{100 * diff:+.2f} points'
    )
  return '\n'.join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--embeddings', default=None)
  parser.add_argument(
    '--split', choices=('standard', 'strict'), default='standard'
  )
  parser.add_argument('--presets', default='thesis,quick')
  parser.add_argument(
    '--same_fits',
    default=None,
    help='architectures (as --hidden) whose fits on all train rows run on '
    'both sides, one per alpha: time, iterations and test accuracy',
  )
  parser.add_argument(
    '--hidden',
    default=None,
    help="architectures of the thesis preset and scikit-learn's fits, e.g. "
    "'32;128,64' (default: the thesis's four)",
  )
  parser.add_argument(
    '--sklearn_points',
    default='4',
    help='grid points whose fold-0 fit scikit-learn runs: a count (0: '
    "none) or grid indices, e.g. '0,4'",
  )
  parser.add_argument(
    '--sklearn_refit',
    type=int,
    default=1,
    help="1: scikit-learn's fit of the chosen point, for test accuracy",
  )
  parser.add_argument(
    '--sklearn_all_folds',
    action='store_true',
    help='fit every fold of the --sklearn_points (default: fold 0 only)',
  )
  parser.add_argument(
    '--sklearn_threads',
    default='auto',
    help="scikit-learn's BLAS threads: a number, or 'auto' (the faster of 1 "
    'and all cores on a short fit)',
  )
  parser.add_argument('--smoke', action='store_true')
  parser.add_argument('--json', default=None, help='also write results here')
  args = parser.parse_args(argv)
  r = run(args)
  print(table(r))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(r, f, indent=1, default=str)


if __name__ == '__main__':
  main()
