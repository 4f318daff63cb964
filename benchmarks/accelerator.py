"""One prepared accelerator benchmark: train step, gallery mAP, CV, input.

On a GPU VM (docs/guide.md, section 4), from the repository root:

  pip install -e . && pip install -U 'jax[cuda12]'
  python -c 'import jax; print(jax.devices())'   # should list the GPU
  python benchmarks/accelerator.py --json accelerator.json

(on a TPU VM: `pip install -U 'jax[tpu]'` instead). It runs in under 8
minutes (`--budget_s`, default 450 s: sections not started by then are
skipped, each section stops its optional work when its share of the time is
spent, with a note) and prints one table:

* train: images/s and model FLOP utilisation (MFU) of the four objectives'
  train step (`trainer.jit_train_step`, the very program `trainer.train`
  runs: on-device views from uint8 canvases, forward, backward, optimiser)
  at ResNet-50 224 px, `config.model.dtype=bfloat16`, at the thesis's batch
  (configs/<objective>.py) and at the largest batch that fits: power-of-two
  multiples of the thesis batch up to `--max_batch`; the next multiple is
  predicted from the compiled step's memory analysis against the device's
  memory limit and run to confirm (halved on RESOURCE_EXHAUSTED). The batch
  is synthetic uint8 data already on the device; steady-state steps are
  timed in one window with a single `block_until_ready` at its end. FLOPs
  per step are XLA's cost analysis of the compiled step (per device; this
  counts what XLA executes, augmentation included); peak FLOP/s come from
  the device kind (PEAK_TFLOPS, dense bf16) or `--peak_tflops`; unknown
  devices show MFU as '-'.
* gallery: full-gallery cosine mAP (`gallery.full_gallery_map`) at N =
  20,000, 100,000 and 1,000,000, D = 2,048 (random features with ~4 crops
  per class, made on the device), with the project's chunk size and with
  `--gallery_chunks`; time, peak device memory (`memory_stats()`, process
  peak, the sizes run in increasing order before the train section), beside
  scikit-learn's `average_precision_score` per query on the host, timed on
  the first queries (their score rows given) and extrapolated to N queries
  (the thesis loop's numpy score matmul is not counted: the ratio is a lower
  bound). When the full run would not fit the time, the first queries are
  run and the time extrapolated (the row says so).
* cv: the few-label MLP grid (`classifiers.cross_validate`, thesis grid,
  5 folds, L-BFGS to scikit-learn's stopping rule, at most 10,000
  iterations) on benchmarks/heads.py's random-init-like embeddings (the
  standard split of 1,643 crops, 400 classes, D = 2,048), beside
  scikit-learn MLPClassifier(solver='lbfgs', max_iter=10_000) fits of the
  same grid on fold 0 on the host, extrapolated to GridSearchCV's grid x 5
  folds + refit (`heads.sklearn_grid_seconds`).
* input: benchmarks/input_pipeline.py's loader images/s (read, decode,
  resize, batch) with all host cores as grain workers, at the train step's
  canvas size, beside each objective's train-step demand: input-bound or not.

Goals (issue #11, on an H200) are printed beside the figures: >= 40 % MFU for
SimCLR and MoCo, gallery mAP at N = 10^6 in under a minute, never
input-bound.

  python benchmarks/accelerator.py [--only train,gallery,cv,input]
      [--objectives rotnet,jigsaw,moco,simclr] [--budget_s 450]
      [--max_batch 4096] [--peak_tflops T] [--json PATH] [--cache_dir DIR]
  python benchmarks/accelerator.py --smoke   # tiny sizes, CPU, seconds

The four objectives' steps compile side by side in threads (one round for
the thesis batches, one per round of the search), so a row's compile time is
the wall time of its round. Rows print as they are measured to stderr and
the table comes at the end on stdout. `--smoke` takes ~1 CPU-minute (2.5 min
wall on a shared 2-core machine), almost all of it compiles; CI runs it
(benchmarks/accelerator_test.py).

`--cache_dir DIR` keeps XLA's compiled programs (JAX's persistent
compilation cache), so a rerun skips most compiles. `main()` returns the
table's rows (dicts; also written by `--json`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import functools
import gc
import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for _p in (REPO, HERE):  # `python benchmarks/accelerator.py` from anywhere
  if _p not in sys.path:
    sys.path.insert(0, _p)

import numpy as np  # noqa: E402

OBJECTIVES = ('rotnet', 'jigsaw', 'moco', 'simclr')
SECTIONS = ('gallery', 'cv', 'train', 'input')  # run in this order
# Shares of the time budget; what a section leaves goes to the next ones.
SHARES = {'gallery': 0.24, 'cv': 0.12, 'train': 0.52, 'input': 0.12}

# Dense bf16 TFLOP/s per device (V100: fp16 tensor cores, no bf16 ones).
# First match of a substring of the lower-case device kind wins.
PEAK_TFLOPS = (
  ('h100 pcie', 756.0),
  ('h100', 989.0),
  ('h200', 989.0),
  ('a100', 312.0),
  ('l40s', 362.0),
  ('l40', 181.0),
  ('l4', 121.0),
  ('v100', 125.0),
  ('tpu v4', 275.0),
  ('tpu v5 lite', 197.0),
  ('tpu v5e', 197.0),
  ('tpu v5p', 459.0),
  ('tpu v5', 459.0),
  ('tpu v6 lite', 918.0),
  ('tpu v6e', 918.0),
)

FULL = dict(
  backbone='resnet50',
  size=224,
  dtype='bfloat16',
  batch=None,  # None: the thesis config's batch
  max_batch=4096,
  search=None,  # the largest-batch search for all objectives
  window_s=3.0,
  warmup=2,
  gallery_sizes=(20_000, 100_000, 1_000_000),
  gallery_chunks='0,256',
  dim=2048,
  sklearn_queries=200,
  cv=dict(n=1643, num_classes=400, dim=2048, max_iter=10_000, sklearn_points=8),
  cv_grid=None,  # None: the thesis grid
  input=dict(
    photos=4,
    photo_size=(2448, 3264),
    boxes=(120, 150),
    config='256',
    batch_size=64,
    batches=20,
    workers=None,  # None: os.cpu_count()
  ),
)
SMOKE = dict(
  backbone='resnet_tiny',
  size=32,
  dtype='bfloat16',
  batch=8,
  max_batch=16,
  search=('rotnet',),  # the largest-batch search for these only
  # 2,000 maximal-Hamming permutations take ~10-30 s on the host.
  overrides={'jigsaw': {'num_permutations': 10, 'tile_dim': 32}},
  window_s=0.1,
  warmup=1,
  gallery_sizes=(500,),
  gallery_chunks='0,64',
  dim=64,
  sklearn_queries=20,
  cv=dict(n=90, num_classes=6, dim=32, max_iter=5, sklearn_points=2),
  cv_grid=(((8,),), (0.01, 0.1)),
  input=dict(
    photos=2,
    photo_size=(480, 640),
    boxes=(10, 12),
    config='native',
    batch_size=8,
    batches=8,
    workers=0,
  ),
)
GOALS = {
  'mfu': 0.40,  # SimCLR and MoCo, on an H200
  'gallery_n': 1_000_000,
  'gallery_s': 60.0,
}


def log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


class Budget:
  """Wall-clock budget: each section gets its share of what is left."""

  def __init__(self, seconds: float, sections):
    self.start = time.perf_counter()
    self.total = seconds
    self.pending = list(sections)

  def left(self) -> float:
    return self.total - (time.perf_counter() - self.start)

  def section(self, name: str) -> float:
    """Deadline (perf_counter) of section `name`, which starts now."""
    shares = sum(SHARES[s] for s in self.pending)
    share = SHARES[name] / shares if shares else 1.0
    self.pending.remove(name)
    return time.perf_counter() + share * max(self.left(), 0.0)


def _row(section, item, setting, result, **fields):
  row = dict(
    section=section,
    item=item,
    setting=setting,
    result=result,
    baseline=fields.pop('baseline', '-'),
    ratio=fields.pop('ratio', '-'),
    goal=fields.pop('goal', '-'),
    note=fields.pop('note', ''),
  )
  row.update(fields)
  return row


def _is_oom(error: BaseException) -> bool:
  text = str(error)
  return (
    'RESOURCE_EXHAUSTED' in text
    or 'Out of memory' in text
    or 'out of memory' in text
  )


def _device_memory():
  """(bytes_limit, peak_bytes_in_use) of device 0; None where unknown."""
  import jax  # pylint: disable=import-outside-toplevel

  try:
    stats = jax.devices()[0].memory_stats() or {}
  except Exception:  # pylint: disable=broad-except  # not on every backend
    stats = {}
  return stats.get('bytes_limit'), stats.get('peak_bytes_in_use')


def peak_tflops(device_kind: str, override: float | None = None):
  if override:
    return float(override)
  kind = device_kind.lower()
  for key, value in PEAK_TFLOPS:
    if key in kind:
      return value
  return None


def cost_flops(cost) -> float:
  """FLOPs of `compiled.cost_analysis()`: a dict, or a list of dicts."""
  if cost is None:
    return float('nan')
  if isinstance(cost, dict):
    cost = [cost]
  values = [float(c.get('flops', 'nan')) for c in cost if c]
  return float(sum(values)) if values else float('nan')


def compiled_bytes(compiled) -> dict:
  """Arguments, outputs, temporaries of a compiled program (memory analysis)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    m = None
  if m is None:
    return {}
  get = lambda k: int(getattr(m, k, 0) or 0)  # noqa: E731
  out = dict(
    argument=get('argument_size_in_bytes'),
    output=get('output_size_in_bytes'),
    alias=get('alias_size_in_bytes'),
    temp=get('temp_size_in_bytes'),
    code=get('generated_code_size_in_bytes'),
  )
  out['total'] = (
    out['argument'] + out['output'] - out['alias'] + out['temp'] + out['code']
  )
  return out


def _gib(n) -> str:
  return '-' if n is None else f'{n / 2**30:.2f} GiB'


# ----------------------------------------------------------------------------
# Train step.


def thesis_batch(objective: str) -> int:
  return importlib.import_module(f'configs.{objective}').get_config().batch_size


def backbone_images(config, objective: str, batch: int) -> int:
  """Images through the backbone per step (MoCo: query + key encoder)."""
  if objective == 'rotnet':
    return batch * int(config.rotnet.get('rotations_per_image', 1))
  if objective == 'jigsaw':
    return 9 * batch
  return 2 * batch


def jax_config(objective: str, backbone: str, size: int, batch: int):
  """The thesis config with backbone/size/batch replaced, as in
  benchmarks/train_step.py (which needs torch to import): views of SIZE px
  from canvases of round(SIZE * 256 / 224) px; Jigsaw's tiles and jitter
  scaled alike (64 px tiles, 21 px jitter at 224)."""
  config = importlib.import_module(f'configs.{objective}').get_config()
  source = int(round(size * 256 / 224))
  config.model.backbone = backbone
  config.batch_size = batch
  config.input.canvas_size = source
  config.input.shorter_side = 0
  settings = config[objective]
  if objective == 'jigsaw':
    settings.jitter = int(round(21 * size / 224))
    settings.crop_size = source - 1  # 255 of 256, as the thesis
  else:
    settings.view_size = size
  config.total_steps = 1000
  return config


class TrainCase:
  """One objective at one batch: the trainer's jitted step.

  `compile()` needs no device memory (abstract shapes), so the cases of all
  objectives compile side by side in threads; `allocate()` makes the state
  and a synthetic uint8 batch on the device, `run()` times steps, `free()`
  drops them.
  """

  def __init__(self, objective: str, batch: int, settings: dict):
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from sspr_jax.core import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
    from sspr_jax.objectives import build_objective  # pylint: disable=import-outside-toplevel
    from sspr_jax.train import optim, trainer  # pylint: disable=import-outside-toplevel

    self.jax = jax
    self.objective, self.batch_size = objective, batch
    config = jax_config(
      objective, settings['backbone'], settings['size'], batch
    )
    config.model.dtype = settings['dtype']
    for key, value in settings.get('overrides', {}).get(objective, {}).items():
      config[objective][key] = value
    self.views = backbone_images(config, objective, batch)
    obj = build_objective(config)
    schedule = optim.learning_rate(
      config, steps_per_epoch=100, total_steps=1000, global_batch=batch
    )
    tx = optim.optimizer(config, schedule)
    mesh = mesh_lib.data_mesh()
    self.init_rng, train_rng, self.data_rng = jax.random.split(
      jax.random.key(0), 3
    )
    s = self.canvas = config.input.canvas_size
    self.spec = {
      'image': jax.ShapeDtypeStruct((batch, s, s, 3), jnp.uint8),
      'size': jax.ShapeDtypeStruct((batch, 2), jnp.int32),
    }
    self.batch_bytes = batch * (s * s * 3 + 2 * 4)
    batch_sharding = mesh_lib.batch_sharding(mesh)

    # Synthetic canvases made on the device, sharded as the trainer's.
    @functools.partial(jax.jit, out_shardings=batch_sharding)
    def data(rng):
      return {
        'image': jax.random.bits(rng, (batch, s, s, 3), jnp.uint8),
        'size': jnp.full((batch, 2), s, jnp.int32),
      }

    self.data = data
    self.init = trainer.make_init(obj, tx, self.spec, mesh)
    self.step = trainer.jit_train_step(obj, tx, schedule, train_rng, mesh)
    self.compiled = self.state = self.batch = None
    self.compile_s = self.flops = None
    self.memory = {}

  def compile(self):
    t = time.perf_counter()
    state_shape = self.jax.eval_shape(self.init, self.init_rng)
    # The init and data programs too, so that allocate() compiles nothing.
    self.init = self.init.lower(self.init_rng).compile()
    self.data = self.data.lower(self.data_rng).compile()
    self.compiled = self.step.lower(state_shape, self.spec).compile()
    self.compile_s = time.perf_counter() - t
    self.flops = cost_flops(self.compiled.cost_analysis())
    self.memory = compiled_bytes(self.compiled)
    return self

  def allocate(self):
    self.batch = self.data(self.data_rng)
    self.state = self.init(self.init_rng)

  def free(self):
    self.state = self.batch = None
    gc.collect()

  def run(self, window_s: float, warmup: int) -> dict:
    jax = self.jax
    metrics = None
    for _ in range(max(warmup, 1)):  # the first run also allocates
      self.state, metrics = self.compiled(self.state, self.batch)
    jax.block_until_ready((self.state, metrics))
    t = time.perf_counter()
    self.state, metrics = self.compiled(self.state, self.batch)
    jax.block_until_ready((self.state, metrics))
    one = time.perf_counter() - t
    steps = int(min(max(window_s / max(one, 1e-6), 2), 200))
    t = time.perf_counter()
    for _ in range(steps):
      self.state, metrics = self.compiled(self.state, self.batch)
    jax.block_until_ready((self.state, metrics))
    seconds = time.perf_counter() - t
    return dict(
      steps=steps, seconds=seconds, loss=float(jax.device_get(metrics['loss']))
    )


def _predict_bytes(case: TrainCase, new_batch: int):
  """Device bytes at `new_batch`: the state constant, the rest ~ batch."""
  m = case.memory
  if not m:
    return None
  state = max(m['argument'] - case.batch_bytes, 0)
  return state + (m['total'] - state) * new_batch / case.batch_size


def compile_all(batches: dict, settings: dict) -> tuple[dict, dict]:
  """Builds and compiles {objective: batch} cases side by side in threads
  (XLA compiles release the GIL); returns ({objective: case}, {objective:
  exception} of the failed)."""
  cases, errors = {}, {}

  def one(item):
    objective, batch = item
    try:
      cases[objective] = TrainCase(objective, batch, settings).compile()
    except Exception as e:  # pylint: disable=broad-except
      errors[objective] = e

  with concurrent.futures.ThreadPoolExecutor(max(len(batches), 1)) as pool:
    list(pool.map(one, batches.items()))
  return cases, errors


def time_case(case: TrainCase, settings, peak) -> dict:
  """Allocates and times a compiled case; raises on failure (OOM too)."""
  try:
    case.allocate()
    r = case.run(settings['window_s'], settings['warmup'])
  finally:
    case.free()
  step_s = r['seconds'] / r['steps']
  flops_s = case.flops / step_s
  _, peak_bytes = _device_memory()
  return dict(
    objective=case.objective,
    batch=case.batch_size,
    views_per_step=case.views,
    canvas=case.canvas,
    images_per_s=case.batch_size / step_s,
    step_s=step_s,
    steps_timed=r['steps'],
    flops_per_step=case.flops,
    tflops_per_s=flops_s / 1e12,
    mfu=flops_s / (peak * 1e12) if peak else None,
    compile_s=case.compile_s,
    compiled_bytes=case.memory.get('total'),
    peak_bytes=peak_bytes,  # the process's peak so far
    loss=r['loss'],
  )


def _train_row(r, kind, settings, note=''):
  mfu = r['mfu']
  goal = '-'
  if r['objective'] in ('simclr', 'moco'):
    goal = f'MFU >= {GOALS["mfu"]:.0%}'
    if mfu is not None:
      goal += ': met' if mfu >= GOALS['mfu'] else ': not met'
  mfu_text = '-' if mfu is None else f'{100 * mfu:.1f} %'
  return _row(
    'train',
    r['objective'],
    f'{settings["backbone"]} {settings["size"]} px {settings["dtype"]}, '
    f'batch {r["batch"]} ({kind}), {r["views_per_step"]} backbone '
    'images/step',
    f'{r["images_per_s"]:,.1f} img/s, MFU {mfu_text} '
    f'({r["flops_per_step"] / 1e12:.3g} TFLOP/step, '
    f'{r["tflops_per_s"]:.3g} TFLOP/s)',
    goal=goal,
    note=(
      f'{r["steps_timed"]} steps timed, compile {r["compile_s"]:.1f} s '
      f'(side by side), compiled {_gib(r["compiled_bytes"])}, process peak '
      f'{_gib(r["peak_bytes"])}' + (f'; {note}' if note else '')
    ),
    kind=kind,
    **r,
  )


def _failed_row(objective, batch, kind, error):
  oom = _is_oom(error)
  if not oom:
    traceback.print_exception(error)
  return _row(
    'train',
    objective,
    f'batch {batch} ({kind})',
    'failed',
    note=('out of memory: ' if oom else '')
    + (str(error).splitlines() or [''])[0][:200],
    kind=kind,
    objective=objective,
    batch=batch,
    images_per_s=None,
  )


def _next_batch(case, best_batch, cap, limit):
  """(next batch to try or None, why not). Power-of-two multiples of the
  best batch so far: the largest one predicted to fit, else the next."""
  new = best_batch * 2
  if new > cap:
    return None, f'next doubling {new} > the cap {cap}'
  predicted = _predict_bytes(case, new) if limit and case else None
  if predicted is None:
    return new, ''
  if predicted > 0.92 * limit:
    return None, (
      f'batch {new} predicted {_gib(predicted)} > 92 % of the '
      f'{_gib(limit)} device limit'
    )
  while new * 2 <= cap and _predict_bytes(case, new * 2) <= 0.92 * limit:
    new *= 2
  return new, ''


def section_train(settings, args, deadline, peak) -> list[dict]:
  """Thesis batches (compiled side by side, timed one by one), then rounds
  of the largest-batch search over all objectives at once."""
  limit, _ = _device_memory()
  thesis = {o: settings['batch'] or thesis_batch(o) for o in args.objectives}
  log(f'train: compiling {thesis} ...')
  cases, errors = compile_all(thesis, settings)
  rows = {o: [] for o in args.objectives}
  search = {}  # objective -> [best row, best case, cap, note]
  for o in args.objectives:
    if o in errors:
      rows[o].append(_failed_row(o, thesis[o], 'thesis', errors[o]))
      continue
    case = cases[o]
    try:
      r = time_case(case, settings, peak)
    except Exception as e:  # pylint: disable=broad-except
      rows[o].append(_failed_row(o, thesis[o], 'thesis', e))
      continue
    log(
      f'  {o} batch {r["batch"]}: {r["images_per_s"]:.1f} img/s, compile '
      f'{r["compile_s"]:.1f} s, {r["flops_per_step"]:.3g} FLOP/step'
    )
    rows[o].append(_train_row(r, 'thesis', settings))
    cap = args.max_batch
    if settings['search'] is not None and o not in settings['search']:
      cap = thesis[o]  # --smoke: one search is enough to test it
    search[o] = [r, case, cap, '']
  while True:
    tries = {}
    for o, (best, case, cap, _) in search.items():
      if case is None:
        continue
      new, why = _next_batch(case, best['batch'], cap, limit)
      if new is None:
        search[o][1], search[o][3] = None, why
      else:
        tries[o] = new
    if not tries:
      break
    cost = max(search[o][0]['compile_s'] for o in tries)
    cost += sum(
      4 * settings['window_s'] + 2 * search[o][0]['step_s'] for o in tries
    )
    if time.perf_counter() + 1.2 * cost > deadline:
      for o, new in tries.items():
        search[o][1], search[o][3] = (
          None,
          f'time share spent before batch {new}',
        )
      break
    log(f'train: compiling {tries} ...')
    new_cases, errors = compile_all(tries, settings)
    for o, new in tries.items():
      best, _, cap, _ = search[o]
      error = errors.get(o)
      r = None
      if error is None:
        try:
          r = time_case(new_cases[o], settings, peak)
        except Exception as e:  # pylint: disable=broad-except
          error = e
      if error is not None:
        if not _is_oom(error):
          traceback.print_exception(error)
        why = f'batch {new}: ' + (
          'out of memory' if _is_oom(error) else 'failed'
        )
        log(f'  {o} {why}')
        if _is_oom(error) and new // 2 > best['batch']:
          # Jumped too far: plain doubling up to the one below.
          search[o][1:] = [_Doubling(), new // 2, why]
        else:
          search[o][1:] = [None, cap, why]
        continue
      log(f'  {o} batch {new}: {r["images_per_s"]:.1f} img/s')
      search[o][0], search[o][1] = r, new_cases[o]
    del new_cases
    gc.collect()
  out = []
  for o in args.objectives:
    out += rows[o]
    if o in search:
      best, _, _, note = search[o]
      if best['batch'] != thesis[o]:
        out.append(_train_row(best, 'largest', settings, note))
      else:
        out[-1]['note'] += f'; no larger batch: {note}'
  return out


class _Doubling:
  """Stand-in case after an OOM: no memory prediction, plain doubling."""

  memory = {}


# ----------------------------------------------------------------------------
# Gallery mAP.


def device_gallery(n: int, dim: int, seed: int = 0):
  """eval.make_gallery's distribution (~4 crops a class), made on device."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

  rng = np.random.default_rng(seed)
  num_classes = max(1, int(round(n / 4.0)))
  labels = rng.integers(0, num_classes, size=n)

  @jax.jit
  def make(key, labels):
    k1, k2 = jax.random.split(key)
    centres = jax.random.normal(k1, (num_classes, dim), jnp.float32)
    emb = jax.random.normal(k2, (n, dim), jnp.float32)
    return emb + 0.2 * centres[labels]

  emb = make(jax.random.key(seed), jnp.asarray(labels, jnp.int32))
  return jax.block_until_ready(emb), labels


def sklearn_sample(emb, labels, queries: int, deadline: float):
  """Seconds per query of sklearn's average_precision_score (host, scores
  given), over the first queries until `queries` or the deadline; their APs."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from sklearn.metrics import average_precision_score  # pylint: disable=import-outside-toplevel

  @jax.jit
  def rows(q, g):
    qn = q / jnp.maximum(jnp.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    gn = g / jnp.maximum(jnp.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return jnp.matmul(qn, gn.T, precision=jax.lax.Precision.HIGHEST)

  n = len(labels)
  everything = np.arange(n)
  aps, spent, block = [], 0.0, 8
  for start in range(0, queries, block):
    scores = np.asarray(rows(emb[start : start + block], emb))
    for j, s in enumerate(scores):
      i = start + j
      if i >= min(queries, n):
        break
      t = time.perf_counter()
      others = everything != i
      y_true = labels[others] == labels[i]
      ap = (
        average_precision_score(y_true, s[others]) if y_true.any() else np.nan
      )
      spent += time.perf_counter() - t
      aps.append(ap)
      if len(aps) >= 3 and time.perf_counter() > deadline:
        return spent / len(aps), np.array(aps)
  return spent / max(len(aps), 1), np.array(aps)


def section_gallery(settings, args, deadline) -> list[dict]:
  from sspr_jax.evaluate import gallery  # pylint: disable=import-outside-toplevel

  rows = []
  sizes = sorted(args.gallery_sizes)
  chunks = [int(c) for c in str(settings['gallery_chunks']).split(',') if c]
  for i, n in enumerate(sizes):
    n_deadline = time.perf_counter() + (deadline - time.perf_counter()) / (
      len(sizes) - i
    )
    if time.perf_counter() > n_deadline - 1:
      rows.append(
        _row('gallery', f'N = {n:,}', '-', 'skipped', note='time budget spent')
      )
      continue
    log(f'gallery N = {n:,} ...')
    t = time.perf_counter()
    emb, labels = device_gallery(n, settings['dim'])
    make_s = time.perf_counter() - t
    # sklearn on the host: a fifth of this size's time.
    per_query_sk, ref_ap = sklearn_sample(
      emb,
      labels,
      settings['sklearn_queries'],
      time.perf_counter() + 0.2 * (n_deadline - time.perf_counter()),
    )
    sk_s = per_query_sk * n
    seen = set()
    for j, c in enumerate(chunks):
      chunk = int(min(c or gallery.default_chunk_size(n), n))
      if chunk in seen:
        continue
      seen.add(chunk)
      c_deadline = time.perf_counter() + (n_deadline - time.perf_counter()) / (
        len(chunks) - j
      )
      rows.append(
        _gallery_row(
          gallery, emb, labels, n, chunk, c == 0, c_deadline, settings
        )
      )
      r = rows[-1]
      r.update(
        sklearn_s=sk_s,
        sklearn_queries=len(ref_ap),
        make_s=make_s,
        baseline=f'sklearn {sk_s:,.0f} s (extrapolated from '
        f'{len(ref_ap)} queries)',
        ratio=f'{sk_s / r["seconds"]:,.0f}x',
        speedup=sk_s / r['seconds'],
      )
      keep = ~np.isnan(ref_ap)
      if r['queries_run'] >= len(ref_ap) and keep.any():
        diff = np.abs(ref_ap[keep] - r.pop('_ap')[: len(ref_ap)][keep])
        r['max_abs_ap_diff'] = float(diff.max())
        r['note'] += f'; max |AP - sklearn AP| {r["max_abs_ap_diff"]:.1e}'
      r.pop('_ap', None)
    del emb
    gc.collect()
  return rows


def _gallery_row(gallery, emb, labels, n, chunk, default, deadline, settings):
  def timed(queries):
    t = time.perf_counter()
    rows = gallery.full_gallery_per_query(
      emb, labels, chunk_size=chunk, num_queries=queries
    )
    return time.perf_counter() - t, rows

  first_s, _ = timed(1)  # compile + one chunk
  # Per-query cost and fixed cost (input checks, norms, class members)
  # from one chunk and a few.
  t_one, _ = timed(chunk)
  probe = min(4 * chunk, n)
  t_probe, part = timed(probe)
  per_query = max((t_probe - t_one) / max(probe - chunk, 1), 1e-9)
  fixed = max(t_one - per_query * chunk, 0.0)
  left = deadline - time.perf_counter()
  if probe == n or fixed + per_query * n <= 0.8 * left:
    t = time.perf_counter()
    result = gallery.full_gallery_map(emb, labels, chunk_size=chunk)
    seconds = time.perf_counter() - t
    queries, how = n, 'measured'
    value = result['map']
    mapping = f'mAP {value:.4f}'
    _, part = timed(min(n, settings['sklearn_queries']))
  else:
    budget = max(0.8 * left - fixed, 0.0)
    queries = int(min(max(probe, budget / per_query // chunk * chunk), n))
    run_s, part = timed(queries)
    seconds = fixed + max(run_s - fixed, 0.0) * n / queries
    how = f'extrapolated from {queries:,} queries ({run_s:.1f} s)'
    keep = part['num_pos'] > 0
    value = float(part['ap'][keep].mean()) if keep.any() else float('nan')
    mapping = f'per-query mAP of those {value:.4f}'
  rows_ap = part['ap']
  _, peak = _device_memory()
  goal = '-'
  if n == GOALS['gallery_n']:
    goal = f'< {GOALS["gallery_s"]:.0f} s: ' + (
      'met' if seconds < GOALS['gallery_s'] else 'not met'
    )
  return _row(
    'gallery',
    f'N = {n:,}',
    f'D = {settings["dim"]}, cosine, chunk {chunk}'
    + (' (project default)' if default else ''),
    f'{seconds:,.2f} s ({how}), {mapping}, peak device memory {_gib(peak)} '
    '(process peak)',
    goal=goal,
    note=f'first call (compile + 1 chunk) {first_s:.2f} s',
    n=n,
    dim=settings['dim'],
    chunk=chunk,
    seconds=seconds,
    measured=how == 'measured',
    queries_run=queries,
    map=value,
    peak_bytes=peak,
    _ap=rows_ap,
  )


# ----------------------------------------------------------------------------
# Few-label CV grid.


def section_cv(settings, args, deadline) -> list[dict]:
  import heads  # pylint: disable=import-outside-toplevel
  from sspr_jax.evaluate import classifiers  # pylint: disable=import-outside-toplevel

  del args
  c = settings['cv']
  x, labels, origins = heads.random_init_like(
    c['n'], c['dim'], c['num_classes']
  )
  train_x, train_y, test_x, test_y = heads.split(x, labels, origins, 'standard')
  masks, _ = classifiers.stratified_folds(
    np.unique(train_y, return_inverse=True)[1], 5
  )
  hidden, alphas = settings['cv_grid'] or (
    classifiers.MLP_HIDDEN,
    classifiers.MLP_ALPHAS,
  )
  log('cv: jitted grid ...')
  cv = classifiers.cross_validate(
    train_x,
    train_y,
    test_x,
    head='mlp',
    hidden_sizes=hidden,
    alphas=alphas,
    val_masks=masks,
    max_iter=c['max_iter'],
  )
  jax_s = cv['seconds']
  m = classifiers.classification_metrics(
    test_y, cv['test_proba'], cv['classes']
  )
  log('cv: sklearn fits on fold 0 ...')
  sk = heads.sklearn_grid_seconds(
    train_x,
    train_y,
    masks,
    [(h, a) for h in hidden for a in alphas],
    max_iter=c['max_iter'],
    points=c['sklearn_points'],
    deadline=deadline,
  )
  sk_s = sk['seconds']
  return [
    _row(
      'cv',
      'MLP grid, 5-fold CV + refit',
      f'{len(train_y)} train / {len(test_y)} test, {c["num_classes"]} '
      f'classes, D = {c["dim"]}, {len(cv["grid"])} grid points, L-BFGS '
      f'to convergence (<= {c["max_iter"]} iterations, mean '
      f'{cv["n_iter_mean"]:.0f})',
      f'{jax_s:.2f} s incl. compiles, test accuracy {m["accuracy"]:.4f}',
      baseline=f'sklearn GridSearchCV ~{sk_s:.1f} s (extrapolated from '
      f'{sk["fits_timed"]} of {sk["fits_total"]} fits)',
      ratio=f'{sk_s / jax_s:.1f}x',
      seconds=jax_s,
      test_accuracy=m['accuracy'],
      sklearn_s=sk_s,
      sklearn_fits_timed=sk['fits_timed'],
      speedup=sk_s / jax_s,
    )
  ]


# ----------------------------------------------------------------------------
# Input pipeline.


def section_input(settings, args, deadline, train_rows) -> list[dict]:
  import input_pipeline as ip  # pylint: disable=import-outside-toplevel
  from sspr_jax.data import pipeline  # pylint: disable=import-outside-toplevel

  del deadline
  c = settings['input']
  workers = os.cpu_count() if c['workers'] is None else c['workers']
  if args.input_workers is not None:
    workers = args.input_workers
  canvas = next(
    (r['canvas'] for r in train_rows if r.get('canvas')),
    int(round(settings['size'] * 256 / 224)),
  )
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = Path(args.data_dir or tmp)
    log('input: building synthetic crops ...')
    t = time.perf_counter()
    ip.ensure_built(
      data_dir,
      {c['config']},
      photos=c['photos'],
      photo_size=tuple(c['photo_size']),
      boxes=tuple(c['boxes']),
    )
    build_s = time.perf_counter() - t
    source = pipeline.open_source(
      ip.DATASET, split='train', data_dir=data_dir, config=c['config']
    )
    log(f'input: {len(source)} crops, {workers} workers ...')
    startup, rate, cpu_ms = ip.measure(
      source,
      image_size=canvas,
      workers=workers,
      batch_size=c['batch_size'],
      batches=c['batches'],
      read_threads=None,
    )
  demand = {
    r['objective']: r['images_per_s']
    for r in train_rows
    if r.get('images_per_s')
  }
  bound = sorted(o for o, d in demand.items() if d > rate)
  if demand:
    goal = 'never input-bound: ' + ('not met' if bound else 'met')
    verdict = f'input-bound: {", ".join(bound)}' if bound else 'not input-bound'
    baseline = 'train demand ' + ', '.join(
      f'{o} {d:,.0f}' for o, d in demand.items()
    )
    ratio = f'{rate / max(demand.values()):.2f}x of the highest demand'
  else:
    goal, verdict, baseline, ratio = (
      'never input-bound',
      'no train rows',
      '-',
      '-',
    )
  return [
    _row(
      'input',
      'host pipeline',
      f'{canvas} px canvases, {workers} grain workers ({os.cpu_count()} '
      f'host cores), batch {c["batch_size"]}, {c["config"]} crops',
      f'{rate:,.0f} img/s ({cpu_ms:.2f} CPU ms/img); {verdict}',
      baseline=baseline,
      ratio=ratio,
      goal=goal,
      note=f'start-up {startup:.1f} s, {len(source)} crops built in '
      f'{build_s:.1f} s',
      images_per_s=rate,
      cpu_ms_per_image=cpu_ms,
      workers=workers,
      input_bound=bound,
      demand=demand,
    )
  ]


# ----------------------------------------------------------------------------


def format_table(rows) -> str:
  cols = ('section', 'item', 'setting', 'result', 'baseline', 'ratio', 'goal')
  lines = [
    '| ' + ' | '.join(cols) + ' | note |',
    '|' + '---|' * (len(cols) + 1),
  ]
  for r in rows:
    cells = [str(r.get(k, '-')) for k in cols] + [r.get('note', '')]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--smoke', action='store_true', help='tiny sizes, CPU')
  p.add_argument('--only', default=','.join(SECTIONS))
  p.add_argument('--objectives', default=','.join(OBJECTIVES))
  p.add_argument('--budget_s', type=float, default=450.0)
  p.add_argument('--max_batch', type=int, default=None)
  p.add_argument('--batch', type=int, default=None, help='instead of thesis')
  p.add_argument('--dtype', default=None, help='config.model.dtype')
  p.add_argument('--peak_tflops', type=float, default=None)
  p.add_argument(
    '--gallery_sizes', default=None, help='comma-separated N (20000,...)'
  )
  p.add_argument(
    '--gallery_chunks',
    default=None,
    help='queries per chunk, comma-separated; 0 = the project default',
  )
  p.add_argument('--input_workers', type=int, default=None)
  p.add_argument('--data_dir', default=None, help='for the input section')
  p.add_argument('--json', default=None, help='also write the rows here')
  p.add_argument('--cache_dir', default=None, help='XLA compilation cache')
  args = p.parse_args(argv)
  args.only = [s for s in args.only.split(',') if s]
  bad = set(args.only) - set(SECTIONS)
  if bad:
    p.error(f'--only: unknown {sorted(bad)}; valid: {",".join(SECTIONS)}')
  args.objectives = [o for o in args.objectives.split(',') if o]
  bad = set(args.objectives) - set(OBJECTIVES)
  if bad:
    p.error(f'--objectives: unknown {sorted(bad)}')
  return args


def main(argv=None) -> list[dict]:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  settings = dict(SMOKE if args.smoke else FULL)
  for key in ('dtype', 'batch', 'gallery_chunks'):
    if getattr(args, key) is not None:
      settings[key] = getattr(args, key)
  args.max_batch = args.max_batch or settings['max_batch']
  args.gallery_sizes = (
    [int(n) for n in args.gallery_sizes.split(',')]
    if args.gallery_sizes
    else list(settings['gallery_sizes'])
  )
  import jax  # pylint: disable=import-outside-toplevel

  if args.cache_dir:
    jax.config.update('jax_compilation_cache_dir', args.cache_dir)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  budget = Budget(args.budget_s, [s for s in SECTIONS if s in args.only])
  device = jax.devices()[0]
  peak = peak_tflops(device.device_kind, args.peak_tflops)
  limit, _ = _device_memory()
  header = [
    f'# accelerator benchmark{" (--smoke)" if args.smoke else ""}, '
    f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC',
    f'# {jax.device_count()} x {device.device_kind} ({device.platform}), '
    f'memory limit {_gib(limit)}, peak '
    + (f'{peak:g} TFLOP/s per device' if peak else 'unknown (MFU -)')
    + f'; jax {jax.__version__}; host {platform.machine()}, '
    f'{os.cpu_count()} cores; budget {args.budget_s:.0f} s',
  ]
  for line in header:
    log(line)
  rows = []
  for name in SECTIONS:
    if name not in args.only:
      continue
    if budget.left() <= 0:
      budget.pending.remove(name)
      rows.append(
        _row(name, '-', '-', 'skipped', note='--budget_s spent before it')
      )
      continue
    deadline = budget.section(name)
    t = time.perf_counter()
    try:  # a failed section leaves the others' rows
      if name == 'train':
        rows += section_train(settings, args, deadline, peak)
      elif name == 'gallery':
        rows += section_gallery(settings, args, deadline)
      elif name == 'cv':
        rows += section_cv(settings, args, deadline)
      else:
        train_rows = [r for r in rows if r['section'] == 'train']
        rows += section_input(settings, args, deadline, train_rows)
    except Exception as e:  # pylint: disable=broad-except
      if args.smoke:
        raise
      traceback.print_exc()
      rows.append(
        _row(name, '-', '-', 'failed', note=str(e).splitlines()[0][:300])
      )
    log(f'{name}: {time.perf_counter() - t:.1f} s')
    write_json(args.json, header, time.perf_counter() - budget.start, rows)
  total = time.perf_counter() - budget.start
  goals = (
    f'Goals (issue #11, H200): MFU >= {GOALS["mfu"]:.0%} for SimCLR and '
    f'MoCo; gallery mAP at N = 10^6 in < {GOALS["gallery_s"]:.0f} s; never '
    'input-bound.'
  )
  out = (
    '\n'.join(header)
    + '\n\n'
    + format_table(rows)
    + f'\n\n{goals}\nTotal {total:.0f} s.\n'
  )
  print(out, flush=True)
  write_json(args.json, header, total, rows)
  return rows


def write_json(path, header, total, rows):
  """The rows so far (after every section: a killed run keeps them)."""
  if path:
    with open(path, 'w') as f:
      json.dump(
        {'header': header, 'total_s': total, 'rows': rows},
        f,
        indent=1,
        default=_json_default,
      )


def _json_default(x):
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating,)):
    return float(x)
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)


if __name__ == '__main__':  # Guard needed: grain spawns worker processes.
  main()
  sys.exit(0)
