"""Fashion-MNIST: self-supervised pre-training on real photos, then gallery
mAP, kNN and a linear head against random init and raw pixels.

  python benchmarks/fashion_mnist.py --work /tmp/fm            # 4 x 10 epochs
  python benchmarks/fashion_mnist.py --work /tmp/fm --objectives simclr \
      --epochs 50
  python benchmarks/fashion_mnist.py --work /tmp/fm --minutes 30  # each
  python benchmarks/fashion_mnist.py --work /tmp/fm --smoke    # ~1-2 min, CPU

Data: Fashion-MNIST (Xiao et al. 2017; 70,000 28x28 grayscale photos of 10
kinds of clothing) from the Debian package `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist) or `--data DIR` holding
{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].

1. The 60,000 training images are written as RGB PNG files (no labels) to
   WORK/fashion_mnist_train/NN/ (1,000 a folder; skipped once complete).
2. Each objective of `--objectives` pre-trains on them through the normal
   'pretrain' mode with `configs/fashion_mnist.py:<objective>` in
   WORK/<objective>; the `image_folder` TFDS dataset is built once in
   WORK/tfds. A rerun resumes unfinished runs and reuses finished ones.
3. Each backbone, a random init of the same architecture and the raw pixels
   (`pixels_backbone(28)`) embed the labeled images held in memory at 28 px
   and are scored with the project's evaluators: full-gallery cosine mAP on
   the 10,000 test images (leave-one-out), kNN accuracy (k=20, cosine; train
   images as memory, test images as queries) and linear-head test accuracy
   (multinomial logistic regression on L2-normalised features, L2 penalty
   picked by 5-fold CV on the 60,000 train embeddings, refit on all of them;
   `linear_probe`).
4. One markdown table is printed and written with a JSON of all figures to
   WORK/results.md and WORK/results.json, then the goals are checked.

`--smoke` runs the same path at toy sizes (512 train / 256 test images,
`resnet_tiny`, 3 steps per objective, 3 folds) in WORK/smoke/; the test uses
it. `--train-images N` pre-trains on the first N images only (WORK/trainN/).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import functools
import gzip
import hashlib
import json
import logging
import math
import os
import pathlib
import shutil
import struct
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `python benchmarks/fashion_mnist.py` from anywhere
  sys.path.insert(0, REPO)
# Before JAX starts: sspr_jax sets its XLA:CPU workaround (sspr_jax/__init__).
import sspr_jax  # noqa: E402,F401  # pylint: disable=g-import-not-at-top,unused-import
from sspr_jax.evaluate import backbone_names  # noqa: E402  # pylint: disable=g-import-not-at-top

DEFAULT_DATA = '/usr/share/datasets/fashion-mnist'
FILES = {
  'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
  'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
CLASS_NAMES = (
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
)
OBJECTIVES = ('moco', 'simclr', 'rotnet', 'jigsaw')
# Ablations: another config of an objective, reported beside it but not
# counted in the goals. 'moco_global_bn': MoCo without shuffle BN (one
# BatchNorm group: the shortcut open).
ABLATIONS = {'moco_global_bn': ('moco', {'moco.shuffle_bn_groups': 1})}
IMAGE_SIZE = 28  # Evaluation: the stored size, no resampling.
IMAGES_PER_FOLDER = 1000
KNN_K = 20
# alpha = 1 / C of LogisticRegression; the penalty is divided by the rows
# (heads.objective), so on 48,000 rows the project's grid (1e-3 .. 1) spans
# almost no regularisation: this one goes 100x stronger.
LINEAR_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)
GOAL_LINEAR = 0.90  # Best objective's linear accuracy,
GOAL_OVER_PIXELS = 0.03  # and its margin over raw pixels.
# The linear head of the smoke run: fewer folds and L-BFGS steps.
SMOKE = dict(
  train_images=512,
  test_images=256,
  batch_size=64,
  steps=3,
  folds=3,
  head_steps=100,
)
# Calibration of `--minutes`: steps timed after the compile (first half).
CALIBRATION_STEPS = 10

log = logging.getLogger('fashion_mnist')


# --------------------------------------------------------------------------
# Data.


_IDX_DTYPES = {
  0x08: np.dtype('>u1'),
  0x09: np.dtype('>i1'),
  0x0B: np.dtype('>i2'),
  0x0C: np.dtype('>i4'),
  0x0D: np.dtype('>f4'),
  0x0E: np.dtype('>f8'),
}


def read_idx(path) -> np.ndarray:
  """The array of an IDX file (LeCun's MNIST format), gzipped or not.

  Header: two zero bytes, a type code (0x08 = uint8, ...), the number of
  dimensions, then each dimension as a big-endian uint32; the data follows
  in C order.
  """
  path = str(path)
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    data = f.read()
  if len(data) < 4 or data[0] or data[1] or data[2] not in _IDX_DTYPES:
    raise ValueError(f'{path}: not an IDX file (header {data[:4].hex()}).')
  dtype, ndim = _IDX_DTYPES[data[2]], data[3]
  offset = 4 + 4 * ndim
  if len(data) < offset:
    raise ValueError(f'{path}: IDX header cut short.')
  shape = struct.unpack(f'>{ndim}I', data[4:offset])
  expected = math.prod(shape) * dtype.itemsize
  if len(data) - offset != expected:
    raise ValueError(
      f'{path}: IDX shape {shape} needs {expected} bytes of data, the file '
      f'has {len(data) - offset}.'
    )
  array = np.frombuffer(data, dtype, offset=offset).reshape(shape)
  return array.astype(dtype.newbyteorder('='))


def find_files(data_dir) -> dict[str, tuple[pathlib.Path, pathlib.Path]]:
  """{split: (images, labels)} under `data_dir` (`.gz` or not).

  Raises:
    FileNotFoundError: one line naming what is missing and how to get it.
  """
  data_dir = pathlib.Path(data_dir)
  found, missing = {}, []
  for split, names in FILES.items():
    paths = []
    for name in names:
      path = next(
        (
          data_dir / n for n in (f'{name}.gz', name) if (data_dir / n).is_file()
        ),
        None,
      )
      if path is None:
        missing.append(f'{name}.gz')
      paths.append(path)
    found[split] = tuple(paths)
  if missing:
    raise FileNotFoundError(
      f'Fashion-MNIST not found in {data_dir} (missing {", ".join(missing)}): '
      'install it with `apt-get install dataset-fashion-mnist` or pass --data '
      'DIR.'
    )
  return found


def load(data_dir, split: str, limit: int = 0):
  """(images uint8 [N, 28, 28], labels int32 [N]), the first `limit` if > 0."""
  images_path, labels_path = find_files(data_dir)[split]
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim != 3 or images.dtype != np.uint8:
    raise ValueError(
      f'{images_path}: expected uint8 images [N, H, W], got '
      f'{images.dtype} {images.shape}.'
    )
  if labels.shape != images.shape[:1]:
    raise ValueError(
      f'{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images.'
    )
  if limit:
    images, labels = images[:limit], labels[:limit]
  return np.ascontiguousarray(images), labels.astype(np.int32)


class Examples:
  """Random-access {'image', 'label'} dicts over arrays (`embed`'s source)."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    self.images, self.labels = images, labels

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    return {'image': self.images[i], 'label': int(self.labels[i])}


def write_pngs(images: np.ndarray, folder: pathlib.Path) -> None:
  """Writes `images` as RGB PNG files NN/MMMMM.png, unless already complete.

  A marker (`.complete.json`: count and digest; hidden, so the dataset
  builder skips it) is written last, so an interrupted write is redone. A
  folder complete with other images is an error: WORK's dataset and
  checkpoints would be stale.
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  marker = folder / '.complete.json'
  stamp = {
    'count': len(images),
    'sha256': hashlib.sha256(images.tobytes()).hexdigest(),
  }
  if marker.is_file():
    if json.loads(marker.read_text()) == stamp:
      log.info('PNG files: %d in %s already complete.', len(images), folder)
      return
    raise SystemExit(
      f"{folder} holds other images than this run's (see {marker}); use a "
      'new --work or delete that folder.'
    )
  digits = len(str(max(len(images) - 1, 0) // IMAGES_PER_FOLDER))
  width = len(str(max(len(images) - 1, 0)))
  for i in tqdm.trange(len(images), desc='write PNGs', unit='img'):
    sub = folder / f'{i // IMAGES_PER_FOLDER:0{digits}d}'
    if i % IMAGES_PER_FOLDER == 0:
      sub.mkdir(parents=True, exist_ok=True)
    rgb = np.repeat(images[i][..., None], 3, axis=-1)
    Image.fromarray(rgb).save(sub / f'{i:0{width}d}.png', compress_level=1)
  marker.write_text(json.dumps(stamp))


# --------------------------------------------------------------------------
# Pre-training.


def make_config(objective: str, args, root: pathlib.Path, image_dir):
  """configs/fashion_mnist.py:<objective> pointed at WORK, with the budget."""
  from configs import fashion_mnist as fm_config  # pylint: disable=g-import-not-at-top
  from sspr_jax.core import config_check  # pylint: disable=g-import-not-at-top

  objective, changes = ABLATIONS.get(objective, (objective, {}))
  config = fm_config.get_config(objective)
  config.update_from_flattened_dict(changes)
  config.data.image_folder_dir = str(image_dir)
  config.data.data_dir = str(root / 'tfds')
  config.input.worker_count = args.workers
  if args.smoke:
    config.model.update(backbone='resnet_tiny', width=0)
    config.batch_size = SMOKE['batch_size']
    config.log_every_steps = 1
  for override in args.set:  # e.g. model.width=8 for a CPU budget
    key, _, text = override.partition('=')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text  # A plain string.
    section = key.split('.')[0]
    if section in fm_config.OBJECTIVES and section != objective:
      continue  # Another objective's setting.
    if config_check.get(config, key) is config_check.MISSING:
      raise SystemExit(f'--set {override}: no config key {key!r}.')
    config.update_from_flattened_dict({key: value})
  return config


def _latest_step(workdir: pathlib.Path) -> int:

  try:
    steps = backbone_names.checkpoint_steps(str(workdir))
  except FileNotFoundError:
    return 0
  return steps[-1] if steps else 0


def _run_pretrain(config, workdir: pathlib.Path) -> float:
  """The 'pretrain' mode on `config` in `workdir`; returns its wall seconds."""
  from sspr_jax import modes  # pylint: disable=g-import-not-at-top

  start = time.perf_counter()
  modes.run(config, str(workdir))
  return time.perf_counter() - start


def calibrate(config, root: pathlib.Path, objective: str) -> dict:
  """Seconds per train step, from a short run in a scratch workdir.

  The first half of the steps includes the compile; the metrics' images/s
  of the second half (the trainer's log interval) gives the step time.
  """
  from sspr_jax.core import metrics as metrics_lib  # pylint: disable=g-import-not-at-top

  scratch = root / 'calibration' / objective
  shutil.rmtree(scratch, ignore_errors=True)
  c = config.copy_and_resolve_references()
  c.total_steps = CALIBRATION_STEPS
  c.log_every_steps = CALIBRATION_STEPS // 2
  c.checkpoint_every_steps = 10 * CALIBRATION_STEPS
  c.schedule.update(name='constant', warmup_fraction=0.0)
  log.info('Calibrating %s: %d steps.', objective, CALIBRATION_STEPS)
  seconds = _run_pretrain(c, scratch)
  last = metrics_lib.read_metrics(str(scratch))[-1]
  shutil.rmtree(scratch, ignore_errors=True)
  return {
    'seconds_per_step': c.batch_size / last['images_per_second'],
    'steps': CALIBRATION_STEPS,
    'seconds': seconds,
  }


def pretrain(
  objective: str, args, root: pathlib.Path, image_dir, num_examples: int
) -> dict:
  """Pre-trains (or resumes, or reuses) `objective`; returns what it did.

  The budget is `--epochs`, or with `--minutes` the steps that fit that much
  training time at the calibrated step time (capped by `--epochs` if given).
  Wall time adds up over the runs that trained (WORK/<objective>/
  benchmark.json), so a resumed run reports its total.
  """
  workdir = root / objective
  config = make_config(objective, args, root, image_dir)
  steps_per_epoch = num_examples // config.batch_size
  record_path = workdir / 'benchmark.json'
  record = json.loads(record_path.read_text()) if record_path.is_file() else {}
  epochs = args.epochs.get(objective, args.epochs.get('*'))
  budget = {'epochs': epochs, 'minutes': args.minutes}
  if args.smoke:
    total = SMOKE['steps']
  elif record.get('budget') == budget:  # The same flags: the same plan.
    total = record['total_steps']
  else:
    if record:
      log.warning(
        '%s: WORK holds a run with budget %s; continuing it with %s (its '
        'schedule changes at step %d).',
        objective,
        record.get('budget'),
        budget,
        _latest_step(workdir),
      )
    total = None
    if epochs is not None or args.minutes is None:
      epochs = 10.0 if epochs is None else epochs
      total = max(1, math.ceil(epochs * steps_per_epoch))
    if args.minutes is not None:
      record['calibration'] = calibrate(config, root, objective)
      fit = int(args.minutes * 60 / record['calibration']['seconds_per_step'])
      total = max(1, fit if total is None else min(total, fit))
  config.total_steps = total
  before = _latest_step(workdir)
  log.info(
    'Pre-training %s: %d steps (%.2f epochs of %d images, batch %d) in %s%s.',
    objective,
    total,
    total / steps_per_epoch,
    num_examples,
    config.batch_size,
    workdir,
    f', resuming at step {before}'
    if 0 < before < total
    else (f', done already (step {before})' if before else ''),
  )
  seconds = _run_pretrain(config, workdir)
  after = _latest_step(workdir)
  if after > before:  # A run that only found its checkpoint adds nothing.
    record['seconds'] = record.get('seconds', 0.0) + seconds
  record.update(
    budget=budget,
    total_steps=total,
    steps=after,
    epochs=after / steps_per_epoch,
    batch_size=config.batch_size,
    num_examples=num_examples,
  )
  record.setdefault('seconds', 0.0)
  record_path.write_text(json.dumps(record, indent=2))
  if after < total:  # SIGTERM: the trainer saved and returned early.
    raise SystemExit(
      f'{objective} stopped at step {after} of {total} (SIGTERM); rerun the '
      'same command to resume.'
    )
  log.info(
    'Pre-trained %s: step %d, %.1f min of training in all.',
    objective,
    after,
    record['seconds'] / 60,
  )
  return record


# --------------------------------------------------------------------------
# Evaluation.


def span_coordinates(train_x, test_x, rtol: float = 1e-9):
  """(train, test) in a basis of the train rows' span, if much smaller.

  Exact for an L2-penalised linear head: the optimal weights lie in that
  span (a part outside it changes no train logit and only adds penalty), so
  the test logits are unchanged. Raw pixels need it: their 3 channels are
  one gray value, rank <= 785 of 2,352 dimensions, 3x less to fit.
  """

  def blocks(x):  # float64 8,192 rows at a time: no float64 copy of all.
    x = np.asarray(x)
    for start in range(0, len(x), 8192):
      yield np.asarray(x[start : start + 8192], np.float64)

  gram = sum(b.T @ b for b in blocks(train_x))
  eigenvalues, eigenvectors = np.linalg.eigh(gram)
  keep = eigenvalues > eigenvalues[-1] * rtol
  if keep.sum() > 0.75 * len(keep):  # Not worth another compile of the fit.
    return train_x, test_x
  basis = eigenvectors[:, keep]

  def project(x):
    return np.concatenate([b @ basis for b in blocks(x)]).astype(np.float32)

  return project(train_x), project(test_x)


@functools.lru_cache(maxsize=None)
def _linear_fit(steps: int):
  """Jitted (start, x, y, row weights, alpha, test x) -> (train rows
  predicted right, test probabilities) of one L-BFGS linear head."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from sspr_jax.evaluate import classifiers as heads  # pylint: disable=g-import-not-at-top

  def fit(params0, x, y, weights, alpha, test_x):
    params, _ = heads.fit(params0, x, y, weights, alpha, max_iter=steps)
    correct = jnp.argmax(heads.logits_fn(params, x), axis=-1) == y
    return correct, heads.predict_proba(params, test_x)

  return jax.jit(fit)


def linear_probe(
  train_x, train_y, test_x, test_y, *, folds: int, steps: int = 200
) -> dict:
  """Linear-head test accuracy, its L2 penalty chosen by k-fold CV.

  What `heads.cross_validate(head='linear')` does (zero start, L-BFGS for
  `steps` iterations, `heads.stratified_folds`, the first alpha of the best
  mean validation accuracy as GridSearchCV, refit on all train rows), with
  two differences. The fits run one after the other: vmapped, the 30 fits
  of the grid took 10x the time of 30 single ones on CPU (the backtracking
  line search runs until the slowest fit accepts). And the zero start is an
  argument of the jitted fit: `cross_validate` makes it a constant inside
  its jit, which XLA:CPU of jaxlib 0.10.2 miscompiles in a YNNPACK fusion
  (NaN; `sspr_jax/__init__.py` keeps reductions out of those fusions).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from sspr_jax.evaluate import classifiers as heads  # pylint: disable=g-import-not-at-top

  classes, y = np.unique(np.asarray(train_y), return_inverse=True)
  val_masks, _ = heads.stratified_folds(y, folds)
  params0 = heads.init_params(
    jax.random.PRNGKey(0), (train_x.shape[1], len(classes)), zeros=True
  )
  fit = _linear_fit(steps)
  x, y = jnp.asarray(train_x, jnp.float32), jnp.asarray(y, jnp.int32)
  test_x = jnp.asarray(test_x, jnp.float32)
  val_acc = np.zeros((folds, len(LINEAR_ALPHAS)))
  for f, val in enumerate(val_masks):
    weights = jnp.asarray(~val, jnp.float32)
    for a, alpha in enumerate(LINEAR_ALPHAS):
      correct, _ = fit(params0, x, y, weights, jnp.float32(alpha), test_x)
      val_acc[f, a] = np.asarray(correct)[val].mean()
  mean_acc = val_acc.mean(0)
  best = int(np.argmax(mean_acc))
  _, proba = fit(
    params0,
    x,
    y,
    jnp.ones(len(y), jnp.float32),
    jnp.float32(LINEAR_ALPHAS[best]),
    test_x,
  )
  metrics = heads.classification_metrics(test_y, np.asarray(proba), classes)
  return {
    'accuracy': metrics['accuracy'],
    'alpha': LINEAR_ALPHAS[best],
    'cv_accuracy': float(mean_acc[best]),
    'cv_accuracy_by_alpha': dict(
      zip(map(str, LINEAR_ALPHAS), map(float, mean_acc))
    ),
    'confusion': metrics['confusion'].tolist(),
  }


def evaluate(
  backbone, train, test, *, batch_size: int, folds: int, head_steps: int
) -> dict:
  """Gallery mAP (test set), kNN and linear-head accuracy of one backbone."""
  # pylint: disable=g-import-not-at-top
  from sspr_jax.evaluate import embed
  from sspr_jax.evaluate import gallery
  from sspr_jax.evaluate import knn

  seconds = {}
  start = time.perf_counter()
  kw = dict(image_size=IMAGE_SIZE, batch_size=batch_size, keys=('label',))
  train_emb = embed.embed(backbone, train, **kw)
  test_emb = embed.embed(backbone, test, **kw)
  for emb, part in ((train_emb, train), (test_emb, test)):
    if not np.array_equal(emb['label'], part.labels):
      raise AssertionError('embed returned the examples out of order.')
  seconds['embed'] = time.perf_counter() - start

  start = time.perf_counter()
  g = gallery.gallery_metrics(
    test_emb['features'], test.labels, scores=('cosine',)
  )
  seconds['gallery'] = time.perf_counter() - start

  start = time.perf_counter()
  knn_acc = knn.knn_accuracy(
    train_emb['features'],
    train.labels,
    test_emb['features'],
    test.labels,
    k=KNN_K,
  )
  seconds['knn'] = time.perf_counter() - start

  start = time.perf_counter()
  train_x, test_x = span_coordinates(
    train_emb['features_normalized'], test_emb['features_normalized']
  )
  linear = linear_probe(
    train_x, train.labels, test_x, test.labels, folds=folds, steps=head_steps
  )
  seconds['linear'] = time.perf_counter() - start
  return {
    'full_map': g['full_map/cosine'],
    'full_top1': g['full_top1/cosine'],
    'average_map': g['average_map/cosine'],
    'knn_accuracy': knn_acc,
    'linear_accuracy': linear['accuracy'],
    'linear_alpha': linear['alpha'],
    'linear_cv_accuracy': linear['cv_accuracy'],
    'linear_cv_accuracy_by_alpha': linear['cv_accuracy_by_alpha'],
    'linear_confusion': linear['confusion'],
    'feature_dim': int(train_emb['features'].shape[1]),
    'linear_dim': int(train_x.shape[1]),
    'seconds': seconds,
  }


# --------------------------------------------------------------------------
# Report.


def _pct(x) -> str:
  return f'{100 * x:.2f}' if x is not None and math.isfinite(x) else 'n/a'


def format_table(rows: list[dict]) -> str:
  lines = [
    '| model | pre-training | full-gallery mAP (cosine) % | kNN acc '
    f'(k={KNN_K}) % | linear acc % |',
    '|---|---|---|---|---|',
  ]
  for r in rows:
    p = r.get('pretrain')
    if p is None:
      pre = '-'
    else:
      pre = (
        f'{p["seconds"] / 60:.1f} min, {p["epochs"]:.3g} epochs '
        f'({p["steps"]:,} steps)'
      )
    m = r.get('metrics') or {}
    lines.append(
      f'| {r["name"]} | {pre} | {_pct(m.get("full_map"))} | '
      f'{_pct(m.get("knn_accuracy"))} | {_pct(m.get("linear_accuracy"))} |'
    )
  return '\n'.join(lines)


def check_goals(rows: list[dict]) -> list[str]:
  """One line per goal: met, or missed by how much (percentage points)."""
  by_name = {r['name']: r.get('metrics') for r in rows}
  objectives = [r for r in rows if r['kind'] == 'objective']
  random_m, pixels_m = by_name['random init'], by_name['raw pixels']
  trained = [r for r in objectives if r.get('metrics')]
  if not trained:
    return ['No pre-trained backbone to check.']

  def verdict(gap: float, strict: bool = True) -> str:
    met = gap > 0 if strict else gap >= 0
    return 'met' if met else f'missed by {100 * -gap:.2f} points'

  lines = []
  best = max(trained, key=lambda r: r['metrics']['linear_accuracy'])
  lin = best['metrics']['linear_accuracy']
  need = max(GOAL_LINEAR, pixels_m['linear_accuracy'] + GOAL_OVER_PIXELS)
  lines.append(
    f'Best objective ({best["name"]}) linear accuracy >= '
    f'{100 * GOAL_LINEAR:.0f} % and >= {100 * GOAL_OVER_PIXELS:.0f} points '
    f'above raw pixels ({_pct(pixels_m["linear_accuracy"])} %): '
    f'{_pct(lin)} % vs {_pct(need)} %: {verdict(lin - need, strict=False)}.'
  )
  metrics = ('full_map', 'knn_accuracy', 'linear_accuracy')
  for r in objectives:
    if not r.get('metrics'):
      lines.append(f'{r["name"]} above random init: missed (no backbone).')
      continue
    gaps = {k: r['metrics'][k] - random_m[k] for k in metrics}
    worst = min(gaps, key=gaps.get)
    lines.append(
      f'{r["name"]} above random init on all three metrics: '
      + (
        'met'
        if gaps[worst] > 0
        else f'{worst} missed by {100 * -gaps[worst]:.2f} points'
      )
      + ' ('
      + ', '.join(f'{k} {100 * v:+.2f}' for k, v in gaps.items())
      + ').'
    )
  best = max(trained, key=lambda r: r['metrics']['full_map'])
  top = best['metrics']['full_map']
  over = max(random_m['full_map'], pixels_m['full_map'])
  lines.append(
    f'Best gallery mAP ({best["name"]}, {_pct(top)} %) above both baselines '
    f'(random {_pct(random_m["full_map"])} %, pixels '
    f'{_pct(pixels_m["full_map"])} %): {verdict(top - over)}.'
  )
  return lines


# --------------------------------------------------------------------------
# Main.


def parse_args(argv):
  p = argparse.ArgumentParser(
    description=__doc__.split('\n\n')[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  p.add_argument('--work', required=True, help='Folder for everything.')
  p.add_argument(
    '--data', default=DEFAULT_DATA, help='Folder of the idx(.gz) files.'
  )
  p.add_argument(
    '--objectives',
    default=','.join(OBJECTIVES),
    help='Comma-separated; empty: only the baselines.',
  )
  p.add_argument(
    '--epochs',
    default=None,
    help='Pre-training epochs per objective (default 10; with --minutes: '
    'an upper bound): a number, or OBJECTIVE=N pairs, comma-separated, '
    'e.g. simclr=4,rotnet=2 (*=N for the others).',
  )
  p.add_argument(
    '--minutes',
    type=float,
    default=None,
    help='Training time per objective: the steps that fit it at the step '
    'time of a short calibration run.',
  )
  p.add_argument(
    '--workers',
    type=int,
    default=0,
    help='grain worker processes decoding the pre-training images.',
  )
  p.add_argument(
    '--eval-batch', type=int, default=500, help='Images per embed batch.'
  )
  p.add_argument(
    '--folds',
    type=int,
    default=None,
    help="CV folds choosing the linear head's L2 penalty (default 5).",
  )
  p.add_argument(
    '--train-images',
    type=int,
    default=None,
    help='Use the first N training images (default all; a subset gets its '
    'own WORK/trainN/ folder).',
  )
  p.add_argument(
    '--test-images',
    type=int,
    default=None,
    help='Use the first N test images (default all).',
  )
  p.add_argument(
    '--set',
    action='append',
    default=[],
    metavar='KEY=VALUE',
    help='Config override for every objective (e.g. model.width=8); a key '
    'of one objective (moco.queue_size=...) applies to that one only.',
  )
  p.add_argument('--smoke', action='store_true', help='Toy sizes, ~1-2 min.')
  args = p.parse_args(argv)
  for name in ('train_images', 'test_images'):
    if getattr(args, name) is None:
      setattr(args, name, SMOKE[name] if args.smoke else 0)
    if getattr(args, name) < 0:
      p.error(f'--{name.replace("_", "-")} must be >= 0')
  args.objectives = [o.strip() for o in args.objectives.split(',') if o.strip()]
  valid = OBJECTIVES + tuple(ABLATIONS)
  unknown = sorted(set(args.objectives) - set(valid))
  if unknown:
    p.error(f'unknown objectives {unknown}; valid: {", ".join(valid)}')
  if args.folds is None:
    args.folds = SMOKE['folds'] if args.smoke else 5
  if args.folds < 2:
    p.error(f'--folds must be >= 2, got {args.folds}')
  try:
    text = args.epochs or ''
    if text and '=' not in text:
      text = f'*={text}'
    args.epochs = {
      k.strip(): float(v)
      for k, v in (p.split('=') for p in text.split(',') if p)
    }
  except ValueError:
    p.error(
      f'--epochs takes a number or OBJECTIVE=N pairs, got {args.epochs!r}'
    )
  for name, value in [('minutes', args.minutes), *args.epochs.items()]:
    if value is not None and not value > 0:
      p.error(f'--epochs/--minutes must be > 0, got {name}: {value}')
  return args


def main(argv=None) -> dict:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(
    format='%(asctime)s %(levelname).1s %(message)s', datefmt='%H:%M:%S'
  )
  # As main.py: our progress at INFO; Orbax and TFDS's absl chatter not.
  logging.getLogger().setLevel(logging.INFO)
  logging.getLogger('absl').setLevel(logging.WARNING)
  started = time.perf_counter()
  work = pathlib.Path(args.work).expanduser().absolute()
  # Another set of training images, or the toy model, gets its own folder:
  # its PNGs, dataset and checkpoints never mix with the full run's.
  if args.smoke:
    default = args.train_images == SMOKE['train_images']
    root = work / ('smoke' if default else f'smoke_train{args.train_images}')
  elif args.train_images:
    root = work / f'train{args.train_images}'
  else:
    root = work
  try:
    files = find_files(args.data)
  except FileNotFoundError as e:
    raise SystemExit(str(e)) from None
  train = Examples(*load(args.data, 'train', args.train_images))
  test = Examples(*load(args.data, 'test', args.test_images))
  log.info(
    'Fashion-MNIST: %d train, %d test images from %s.',
    len(train),
    len(test),
    args.data,
  )

  image_dir = root / 'fashion_mnist_train'
  rows = []
  if args.objectives:
    log.info('Writing the %d training images as PNG files.', len(train))
    write_pngs(train.images, image_dir)
    from sspr_jax.data import prepare  # pylint: disable=g-import-not-at-top

    log.info('Building (or opening) the image_folder dataset in %s.', root)
    config = make_config(args.objectives[0], args, root, image_dir)
    builder = prepare.build_datasets(
      config.data, str(root), which=('image_folder',)
    )['image_folder']
    num_examples = builder.info.splits['train'].num_examples
    if num_examples != len(train):
      raise SystemExit(
        f'The image_folder dataset in {root / "tfds"} has {num_examples} '
        f'images, not {len(train)}: delete {root / "tfds" / "image_folder"} '
        'and rerun.'
      )
    for objective in args.objectives:
      kind = 'ablation' if objective in ABLATIONS else 'objective'
      row = {'name': objective, 'kind': kind, 'pretrain': None}
      try:
        row['pretrain'] = pretrain(
          objective, args, root, image_dir, num_examples
        )
      except Exception as e:  # pylint: disable=broad-except
        # The other objectives still run; their rows and the exit status
        # say that this one failed.
        log.exception('Pre-training %s failed.', objective)
        row['error'] = f'{type(e).__name__}: {e}'
      rows.append(row)

  model = make_config(OBJECTIVES[0], args, root, image_dir).model
  architecture = {k: model[k] for k in ('backbone', 'width', 'stem')}
  rows.append(
    {
      'name': 'random init',
      'kind': 'baseline',
      'backbone': lambda: backbone_names.random_backbone(architecture, seed=0),
    }
  )
  rows.append(
    {
      'name': 'raw pixels',
      'kind': 'baseline',
      'backbone': lambda: backbone_names.pixels_backbone(IMAGE_SIZE),
    }
  )
  for row in rows:
    make = row.pop('backbone', None)
    if 'error' in row:
      continue
    log.info('Evaluating %s.', row['name'])
    if make is None:
      backbone = backbone_names.load_backbone(
        str(root / row['name']), name=row['name']
      )
    else:
      backbone = make()
    row['metrics'] = evaluate(
      backbone,
      train,
      test,
      batch_size=args.eval_batch,
      folds=args.folds,
      head_steps=SMOKE['head_steps'] if args.smoke else 200,
    )
    log.info(
      'Evaluated %s: mAP %s %%, kNN %s %%, linear %s %% (%.0f s).',
      row['name'],
      _pct(row['metrics']['full_map']),
      _pct(row['metrics']['knn_accuracy']),
      _pct(row['metrics']['linear_accuracy']),
      sum(row['metrics']['seconds'].values()),
    )

  import jax  # pylint: disable=g-import-not-at-top

  table = format_table(rows)
  goals = check_goals(rows)
  now = datetime.datetime.now(datetime.timezone.utc)
  header = (
    f'Fashion-MNIST benchmark, {now:%Y-%m-%d %H:%M} UTC: '
    f'{len(train):,} train / {len(test):,} test images, '
    f'{jax.devices()[0].device_kind} ({jax.default_backend()}), '
    f'{os.cpu_count()} CPU cores; `python benchmarks/fashion_mnist.py '
    f'{" ".join(sys.argv[1:] if argv is None else argv)}`'
  )
  report = '\n'.join(
    [header, '', table, '', 'Goals:', *(f'- {g}' for g in goals)]
  )
  print('\n' + report + '\n', flush=True)
  root.mkdir(parents=True, exist_ok=True)
  (root / 'results.md').write_text(report + '\n')
  results = {
    'header': header,
    'args': vars(args),
    'data': {
      'train': len(train),
      'test': len(test),
      'files': {k: [str(p) for p in v] for k, v in files.items()},
    },
    'class_names': list(CLASS_NAMES),
    'rows': rows,
    'goals': goals,
    'table': table,
    'seconds': time.perf_counter() - started,
  }
  (root / 'results.json').write_text(json.dumps(results, indent=2))
  log.info('Wrote %s and %s.', root / 'results.md', root / 'results.json')
  failed = [r['name'] for r in rows if 'error' in r]
  if failed:
    raise SystemExit(f'Pre-training failed for {", ".join(failed)} (above).')
  return results


if __name__ == '__main__':  # Guard needed: grain and TFDS spawn processes.
  main()
