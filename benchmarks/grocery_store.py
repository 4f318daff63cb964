"""GroceryStore: self-supervised pre-training on real product photos, scored
against random init, raw pixels and ImageNet features, all in one run.

  # Selection (pre-train on train, score val): candidate views, 2 seeds
  # (the quick start's views, then the chosen ones: the config's defaults).
  python benchmarks/grocery_store.py --clone GroceryStoreDataset \
      --work /tmp/gs --protocol select --steps 1320 --seeds 0,1 \
      --variant 'simclr;@color_strength=0.5;@crop_scale=(0.2, 1.0);@grayscale_p=0.2' \
      --variant 'simclr;@color_strength=0.0;@grayscale_p=0.0'
  # Final (pre-train on train + val, score test once), the chosen views.
  python benchmarks/grocery_store.py --clone GroceryStoreDataset \
      --work /tmp/gs --protocol final --steps 1320 \
      --variant simclr --variant moco --variant rotnet
  python benchmarks/grocery_store.py ... --smoke      # toy sizes, ~1 min

On 2 CPU cores, `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=` makes
the train steps faster (benchmarks/RESULTS.md); the figures there used it.

Data: GroceryStoreDataset (Klasson et al., WACV 2019; MIT licence), a clone
of the public git repository `marcusklasson/GroceryStoreDataset`:
`dataset/{train,val,test}.txt` list `path, fine id, coarse id` (2,640 / 296 /
2,485 photos of 81 products), `dataset/classes.csv` names each class and its
iconic catalogue image.

Protocol (choose on val, never on test):
- `select`: pre-train without labels on the train photos; score the val
  photos with train as the kNN memory and the linear head's training set.
- `final`: pre-train on train + val; score the test photos the same way.

Per backbone it reports kNN accuracy (k=`KNN_K`, cosine, train as memory),
full-gallery cosine mAP over the query photos (leave-one-out, REFERENCE.md),
catalogue top-1 (the query photo's nearest iconic image, one per product)
and linear-head accuracy (`fashion_mnist.linear_probe`: L2 penalty by 5-fold
CV on train). Baselines in the same run: random init of the same network,
raw pixels at 16 and 32 px, ImageNet EfficientNet-Lite0 frozen at 224 px
(needs the `imagenet` extra; left out with a warning otherwise).

A variant is the objective of `configs/grocery_store.py` and `;`-separated
overrides; `@key` is the objective's own section (`@color_strength=0.1` is
`simclr.color_strength=0.1` for SimCLR). Each variant x seed pre-trains in
WORK/<protocol>/<variant>/seed<k> through the normal pretrain mode; results
are cached in WORK/<protocol>/results.json, so a rerun skips what is done.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime
import importlib.util
import json
import logging
import math
import os
import pathlib
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)
import sspr_jax  # noqa: E402,F401  # pylint: disable=g-import-not-at-top,unused-import
from sspr_jax.evaluate import backbone_names  # noqa: E402  # pylint: disable=g-import-not-at-top

_FM_PATH = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), 'fashion_mnist.py'
)
_spec = importlib.util.spec_from_file_location('fashion_mnist_bench', _FM_PATH)
fm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fm)

KNN_K = 10
PROTOCOLS = {'select': (('train',), 'val'), 'final': (('train', 'val'), 'test')}
IMAGENET_SIZE = 224
SMOKE = dict(per_class=4, steps=2, folds=2, head_steps=20, batch_size=8)

log = logging.getLogger('grocery_store')


# --------------------------------------------------------------------------
# Data.


class Photos:
  """Random-access {'image': JPEG bytes, 'label'} over photo paths."""

  def __init__(self, paths, labels):
    self.paths = list(paths)
    self.labels = np.asarray(labels, np.int64)
    self._bytes = [pathlib.Path(p).read_bytes() for p in self.paths]

  def __len__(self):
    return len(self.paths)

  def __getitem__(self, i):
    return {'image': self._bytes[i], 'label': int(self.labels[i])}


def check_clone(clone: pathlib.Path) -> pathlib.Path:
  dataset = clone / 'dataset'
  missing = [
    n
    for n in ('train.txt', 'val.txt', 'test.txt', 'classes.csv')
    if not (dataset / n).is_file()
  ]
  if missing:
    raise SystemExit(
      f'{clone} is not a clone of GroceryStoreDataset (no dataset/'
      f'{missing[0]}); get it with `git clone https://github.com/'
      'marcusklasson/GroceryStoreDataset`.'
    )
  return dataset


def read_split(dataset: pathlib.Path, split: str, per_class: int = 0):
  """[(path, fine id)] of one split; `per_class` > 0 keeps that many."""
  rows, seen = [], {}
  listing = dataset / f'{split}.txt'
  for n, line in enumerate(listing.read_text().splitlines(), 1):
    if not line.strip():
      continue
    parts = [p.strip() for p in line.split(',')]
    if len(parts) != 3 or not parts[1].isdigit():
      raise SystemExit(f'{listing}:{n}: expected "path, fine, coarse".')
    label = int(parts[1])
    if per_class and seen.get(label, 0) >= per_class:
      continue
    seen[label] = seen.get(label, 0) + 1
    path = dataset / parts[0]
    if not path.is_file():
      raise SystemExit(f'{listing}:{n}: no file {path}.')
    rows.append((path, label))
  return rows


def read_iconic(dataset: pathlib.Path) -> list[tuple[pathlib.Path, int]]:
  """[(iconic image, fine id)], one per class (classes.csv)."""
  with open(dataset / 'classes.csv', newline='') as f:
    rows = list(csv.reader(f))[1:]
  return [(dataset / r[4].lstrip('/'), int(r[1])) for r in rows if r]


def pretrain_folder(root, dataset, splits, rows) -> pathlib.Path:
  """A folder of symlinks to the photos of `splits`: one image_folder whose
  `train` split is all of them (under `photos/`, since top-level `train/`
  and `val/` folders would be read as two splits, and pre-training reads
  only `train`)."""
  folder = root / ('all_images_' + '_'.join(splits))
  done = folder / '.complete'
  if done.is_file():
    return folder
  for path, _ in rows:
    link = folder / 'photos' / path.relative_to(dataset)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
      link.symlink_to(path)
  done.write_text(str(len(rows)))
  return folder


# --------------------------------------------------------------------------
# Variants and pre-training.


def parse_variant(text: str) -> tuple[str, dict]:
  """'simclr;@color_strength=0.1' -> ('simclr', {'simclr.color_strength':
  0.1})."""
  objective, *overrides = [p.strip() for p in text.split(';') if p.strip()]
  changes = {}
  for o in overrides:
    key, sep, value = o.partition('=')
    if not sep:
      raise SystemExit(f'--variant {text!r}: {o!r} is not KEY=VALUE.')
    if key.startswith('@'):
      key = f'{objective}.{key[1:]}'
    try:
      changes[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      changes[key] = value
  return objective, changes


def make_config(variant: str, seed: int, image_dir, tfds_dir, steps: int):
  from configs import grocery_store as gs_config  # pylint: disable=g-import-not-at-top
  from sspr_jax.core import config_check  # pylint: disable=g-import-not-at-top

  objective, changes = parse_variant(variant)
  config = gs_config.get_config(objective)
  for key, value in changes.items():
    if config_check.get(config, key) is config_check.MISSING:
      raise SystemExit(f'--variant {variant!r}: no config key {key!r}.')
    config.update_from_flattened_dict({key: value})
  config.seed = seed
  # The photos of the protocol's pre-training splits (train + val for
  # `final`) as one image folder; the gallery settings are the benchmark's.
  config.input.dataset = 'image_folder'
  config.dataset = ''
  config.evaluate.catalogue = ''
  config.data.image_folder_dir = str(image_dir)
  config.data.data_dir = str(tfds_dir)
  config.total_steps = steps
  config.mode = 'pretrain'
  return config


def budget_steps(config, workdir: pathlib.Path, minutes: float) -> dict:
  """The steps that fit `minutes` of wall clock, compile included.

  A short run times a step after the compile (`fashion_mnist.calibrate`);
  the rest of its time, start-up and compile, is paid again by the real
  run. Kept in WORKDIR/budget.json, so a resumed run trains to the same
  step.
  """
  record = workdir / 'budget.json'
  if record.is_file():
    return json.loads(record.read_text())
  calibration = fm.calibrate(config, workdir.parent, workdir.name)
  per_step = calibration['seconds_per_step']
  overhead = max(calibration['seconds'] - calibration['steps'] * per_step, 0)
  steps = max(int((minutes * 60 - overhead) / per_step), 1)
  plan = dict(calibration, overhead_seconds=overhead, total_steps=steps)
  workdir.mkdir(parents=True, exist_ok=True)
  record.write_text(json.dumps(plan, indent=2))
  return plan


def pretrain(config, workdir: pathlib.Path) -> dict:
  before = fm._latest_step(workdir)  # pylint: disable=protected-access
  seconds = fm._run_pretrain(config, workdir)  # pylint: disable=protected-access
  after = fm._latest_step(workdir)  # pylint: disable=protected-access
  if after < config.total_steps:
    raise SystemExit(
      f'{workdir} stopped at step {after} of {config.total_steps}; rerun.'
    )
  return {'steps': after, 'seconds': seconds, 'resumed_at': before}


# Embedding speed (images/s on the 2 CPU cores, benchmarks/RESULTS.md) by
# architecture at its evaluation size, for the expected-time estimate.
EMBED_RATE = {'efficientnet_lite0': 40.0}
DEFAULT_EMBED_RATE = 600.0
# Start-up, compile and calibration of one pre-training run, minutes.
RUN_OVERHEAD_MINUTES = 1.5


def expected_minutes(plan, num_images: int, minutes_per_run) -> float:
  """About how long the run takes: pre-training `minutes_per_run` (or the
  estimate of a step-budget run) plus the embedding of `num_images` per
  backbone; `plan` lists (architecture name, pre-trains?) per backbone."""
  total = 0.0
  for architecture, trains in plan:
    rate = EMBED_RATE.get(architecture, DEFAULT_EMBED_RATE)
    total += num_images / rate / 60 + 0.5  # + the kNN and linear head
    if trains:
      total += minutes_per_run + RUN_OVERHEAD_MINUTES
  return total


# --------------------------------------------------------------------------
# Evaluation.


def evaluate(backbone, image_size, data, *, folds, head_steps, linear=True):
  """kNN, full-gallery mAP, catalogue top-1 and linear head of one backbone."""
  # pylint: disable=g-import-not-at-top
  from sspr_jax.evaluate import catalogue
  from sspr_jax.evaluate import embed
  from sspr_jax.evaluate import gallery
  from sspr_jax.evaluate import knn

  start = time.perf_counter()
  kw = dict(image_size=image_size, batch_size=64, keys=('label',))
  emb = {k: embed.embed(backbone, data[k], **kw) for k in data}
  for k, e in emb.items():
    if not np.array_equal(e['label'], data[k].labels):
      raise AssertionError('embed returned the examples out of order.')
  memory, queries, iconic = emb['memory'], emb['queries'], emb['iconic']
  q_labels = data['queries'].labels
  result = {'embed_seconds': time.perf_counter() - start}
  g = gallery.gallery_metrics(queries['features'], q_labels, scores=('cosine',))
  result['full_map'] = g['full_map/cosine']
  result['knn_accuracy'] = knn.knn_accuracy(
    memory['features'],
    data['memory'].labels,
    queries['features'],
    q_labels,
    k=KNN_K,
  )
  c = catalogue.catalogue_metrics(
    queries['features'], q_labels, iconic['features'], data['iconic'].labels
  )
  result['catalogue_top1'] = c['catalogue_top1/cosine']
  result['catalogue_top5'] = c['catalogue_top5/cosine']
  result['catalogue_map'] = c['catalogue_map/cosine']
  if linear:
    train_x, test_x = fm.span_coordinates(
      memory['features_normalized'], queries['features_normalized']
    )
    lin = fm.linear_probe(
      train_x,
      data['memory'].labels,
      test_x,
      q_labels,
      folds=folds,
      steps=head_steps,
    )
    result['linear_accuracy'] = lin['accuracy']
    result['linear_alpha'] = lin['alpha']
  result['seconds'] = time.perf_counter() - start
  return result


IMAGENET_NAME = 'ImageNet EfficientNet-Lite0 (frozen, 224 px)'


def baseline_plan(args) -> list[tuple[str, str, int]]:
  """(name, architecture, image size) of the baselines this run scores."""
  if args.no_baselines:
    return []
  plan = [
    ('random init', 'resnet_tiny', args.image_size),
    ('raw pixels 16x16', 'pixels', args.image_size),
    ('raw pixels 32x32', 'pixels', args.image_size),
  ]
  if not args.no_imagenet:
    plan.append((IMAGENET_NAME, 'efficientnet_lite0', IMAGENET_SIZE))
  return plan


def baseline_backbone(name: str, architecture):
  """The backbone of a `baseline_plan` row; None (with a warning) when its
  weights cannot be had."""
  # pylint: disable=g-import-not-at-top

  if name == 'random init':
    return backbone_names.random_backbone(architecture)
  if name.startswith('raw pixels'):
    return backbone_names.pixels_backbone(int(name.split()[-1].split('x')[0]))
  try:
    return backbone_names.imagenet_backbone('efficientnet_lite0')
  except ImportError as e:
    log.warning('ImageNet baseline left out: %s', e)
    return None


# --------------------------------------------------------------------------
# Report.

METRICS = ('knn_accuracy', 'full_map', 'catalogue_top1', 'linear_accuracy')


def _pct(x) -> str:
  return f'{100 * x:.1f}' if x is not None and math.isfinite(x) else '-'


def format_table(rows: dict) -> str:
  """One line per backbone; seeds as mean (min-max)."""
  head = (
    f'| backbone | seeds | pre-training | kNN (k={KNN_K}) % | full-gallery '
    'mAP % | catalogue top-1 % | linear % |'
  )
  lines = [head, '|---|---|---|---|---|---|---|']
  groups: dict[str, list] = {}
  for key, r in rows.items():
    groups.setdefault(r['name'], []).append(r)
  for name, rs in groups.items():
    cells = []
    for m in METRICS:
      v = [r[m] for r in rs if r.get(m) is not None]
      if not v:
        cells.append('-')
      elif len(v) == 1:
        cells.append(_pct(v[0]))
      else:
        cells.append(f'{_pct(np.mean(v))} ({_pct(min(v))}-{_pct(max(v))})')
    p = [r['pretrain'] for r in rs if r.get('pretrain')]
    pre = (
      f'{np.mean([x["seconds"] for x in p]) / 60:.1f} min, '
      f'{p[0]["steps"]} steps ({p[0]["epochs"]:.1f} epochs)'
      if p
      else '-'
    )
    seeds = ','.join(str(r['seed']) for r in rs if r.get('seed') is not None)
    lines.append(
      f'| {name} | {seeds or "-"} | {pre} | ' + ' | '.join(cells) + ' |'
    )
  return '\n'.join(lines)


# --------------------------------------------------------------------------
# Main.


def parse_args(argv):
  p = argparse.ArgumentParser(
    description=__doc__.split('\n\n')[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument('--clone', required=True, help='GroceryStoreDataset clone.')
  p.add_argument('--work', required=True, help='Folder for everything.')
  p.add_argument('--protocol', choices=sorted(PROTOCOLS), default='select')
  p.add_argument(
    '--variant',
    action='append',
    default=[],
    help="Objective and ';'-separated overrides (repeatable).",
  )
  p.add_argument(
    '--objectives',
    default='',
    help='Comma-separated configs/grocery_store.py presets, each a variant '
    "without overrides ('simclr,moco,rotnet,simclr_imagenet'; default "
    'simclr when no --variant is given).',
  )
  p.add_argument('--seeds', default='0', help='Comma-separated seeds.')
  p.add_argument('--steps', type=int, default=400, help='Steps per run.')
  p.add_argument(
    '--minutes',
    type=float,
    default=None,
    help='Wall-clock pre-training budget per run, compile included (replaces '
    '--steps: the steps that fit, from a timed probe).',
  )
  p.add_argument('--image-size', type=int, default=64, help='Eval size.')
  p.add_argument('--no-linear', action='store_true')
  p.add_argument('--no-imagenet', action='store_true')
  p.add_argument('--no-baselines', action='store_true')
  p.add_argument('--smoke', action='store_true')
  args = p.parse_args(argv)
  args.seeds = [int(s) for s in args.seeds.split(',') if s.strip()]
  from configs import grocery_store as gs_config  # pylint: disable=g-import-not-at-top

  for name in [o.strip() for o in args.objectives.split(',') if o.strip()]:
    if name not in gs_config.PRESETS:
      p.error(
        f'--objectives: unknown {name!r}; valid: '
        f'{", ".join(gs_config.PRESETS)}.'
      )
    args.variant.append(name)
  if not args.variant:
    args.variant = ['simclr']
  if args.minutes is not None and args.minutes <= 0:
    p.error(f'--minutes must be > 0, got {args.minutes}.')
  return args


def main(argv=None) -> dict:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(
    format='%(asctime)s %(levelname).1s %(message)s', datefmt='%H:%M:%S'
  )
  logging.getLogger().setLevel(logging.INFO)
  logging.getLogger('absl').setLevel(logging.WARNING)
  started = time.perf_counter()
  clone = pathlib.Path(args.clone).expanduser().absolute()
  dataset = check_clone(clone)
  work = pathlib.Path(args.work).expanduser().absolute()
  per_class = SMOKE['per_class'] if args.smoke else 0
  root = work / (f'smoke_{args.protocol}' if args.smoke else args.protocol)
  root.mkdir(parents=True, exist_ok=True)
  train_splits, query_split = PROTOCOLS[args.protocol]
  pre_rows = [
    r for s in train_splits for r in read_split(dataset, s, per_class)
  ]
  memory_rows = read_split(dataset, 'train', per_class)
  query_rows = read_split(dataset, query_split, per_class)
  iconic_rows = read_iconic(dataset)
  log.info(
    'GroceryStore %s: pre-train on %s (%d photos), memory train (%d), '
    'queries %s (%d), %d iconic images.',
    args.protocol,
    '+'.join(train_splits),
    len(pre_rows),
    len(memory_rows),
    query_split,
    len(query_rows),
    len(iconic_rows),
  )
  data = {
    'memory': Photos(*zip(*memory_rows)),
    'queries': Photos(*zip(*query_rows)),
    'iconic': Photos(*zip(*iconic_rows)),
  }
  image_dir = pretrain_folder(root, dataset, train_splits, pre_rows)
  results_path = root / 'results.json'
  results = (
    json.loads(results_path.read_text()) if results_path.is_file() else {}
  )

  def save():
    tmp = results_path.with_suffix('.tmp')
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, results_path)

  folds = SMOKE['folds'] if args.smoke else 5
  head_steps = SMOKE['head_steps'] if args.smoke else 200
  steps = SMOKE['steps'] if args.smoke else args.steps
  from sspr_jax.models import backbones  # pylint: disable=g-import-not-at-top

  def score(backbone, image_size):
    return evaluate(
      backbone,
      image_size,
      data,
      folds=folds,
      head_steps=head_steps,
      linear=not args.no_linear,
    )

  minutes = None if args.smoke else args.minutes
  budget = f'minutes={minutes:g}' if minutes else f'steps={steps}'
  runs, plan = [], []
  for variant in args.variant:
    for seed in args.seeds:
      config = make_config(variant, seed, image_dir, root / 'tfds', steps)
      if args.smoke:
        config.batch_size = SMOKE['batch_size']
        config.log_every_steps = 1
      key = f'{variant}|seed={seed}|{budget}'
      runs.append((variant, seed, key, config))
      if key not in results:
        plan.append((config.model.backbone, True))
  plan += [
    (arch, False)
    for name, arch, size in baseline_plan(args)
    if f'baseline|{name}|{size}' not in results
  ]
  images = len(memory_rows) + len(query_rows) + len(iconic_rows)
  per_run = minutes or steps * 0.2 / 60  # ~0.2 s a step (tiny ResNet)
  log.info(
    'Expected time: about %.0f min (%d runs to pre-train%s, %d backbones to '
    'score on %d images; results.json keeps what is done).',
    expected_minutes(plan, images, per_run),
    sum(trains for _, trains in plan),
    f' for {minutes:g} min each' if minutes else f' for {steps} steps each',
    len(plan),
    images,
  )
  todo = []
  for variant, seed, key, config in runs:
    if key in results:
      continue
    name = variant.replace(';', ' ')
    workdir = (
      root
      / 'runs'
      / name.replace(' ', '+').replace('/', '_')
      / f'seed{seed}_{budget.replace("=", "")}'
    )
    todo.append((name, seed, key, config, workdir))
  # Every run is timed before any trains: the plan is known at the start,
  # and work started beside the benchmark later cannot shrink a budget.
  for name, seed, key, config, workdir in todo if minutes else ():
    plan = budget_steps(config, workdir, minutes)
    config.total_steps = plan['total_steps']
    log.info(
      '%s seed %d: %d steps of %.2f s in %g min.',
      name,
      seed,
      plan['total_steps'],
      plan['seconds_per_step'],
      minutes,
    )
  for name, seed, key, config, workdir in todo:
    p = pretrain(config, workdir)
    p['epochs'] = p['steps'] * config.batch_size / len(pre_rows)
    backbone = backbone_names.load_backbone(str(workdir))
    r = score(backbone, config.evaluate.image_size)
    results[key] = dict(r, name=name, seed=seed, pretrain=p)
    save()
    log.info('%s seed %d: %s', name, seed, {m: r.get(m) for m in METRICS})
  from configs import grocery_store as gs_config  # pylint: disable=g-import-not-at-top

  # Random init of the from-scratch network (the quick start's recipe).
  architecture = backbones.architecture(gs_config.get_config('simclr').model)
  for name, _, size in baseline_plan(args):
    key = f'baseline|{name}|{size}'
    if key in results:
      continue
    backbone = baseline_backbone(name, architecture)
    if backbone is not None:
      r = score(backbone, size)
      results[key] = dict(r, name=name, seed=None, pretrain=None)
      save()
      log.info('%s: %s', name, {m: r.get(m) for m in METRICS})
  table = format_table(results)
  minutes = (time.perf_counter() - started) / 60
  text = (
    f'GroceryStore, protocol {args.protocol} ({"+".join(train_splits)} -> '
    f'{query_split}), {datetime.date.today()}, this run {minutes:.1f} min\n\n'
    + table
  )
  (root / 'results.md').write_text(text + '\n')
  print(text)
  return results


if __name__ == '__main__':
  main()
