"""The programs main.py runs, compiled ahead of time for TPU slices, without
a TPU: per-chip memory, FLOPs per step, the largest batch that fits.

  pip install -e '.[tpu-aot]'        # libtpu pinned to jax's version
  python benchmarks/aot.py --json benchmarks/aot.json
  python benchmarks/aot.py --smoke   # tiny ResNet, v5e 2x2, a minute

libtpu compiles for a topology description (`jax.experimental.topologies`)
on any x86-64 Linux machine. Each row lowers and compiles one program for
all chips of a slice as one global `jax.jit` over a `Mesh` of them (a
multi-host slice included: one program over the devices of many
processes), then reads XLA's `cost_analysis()` (FLOPs per chip per step)
and `memory_analysis()` (arguments, outputs, temporaries per chip). The
programs:

* `train`: the trainer's step (`trainer.jit_train_step`, on-device views,
  forward, backward, optimiser) of each objective at the thesis settings
  (ResNet-50, 224 px, bfloat16; `accelerator.jax_config`), per-chip batch B,
  the state replicated or sharded over the chips (`config.shard_state`);
* `embed`: the evaluation embedding (`embed._features_fn`), 256 px, bf16
  parameters as trained in float32, per-chip batch B.

Per row: compiled or the error, per-chip bytes against the chip's HBM, FLOPs
per chip, the ideal step time at the chip's peak dense bf16 rate
(`accelerator.PEAK_TFLOPS`: a measured step time / this = 1 / MFU), and
the compile time. `--largest` fits per-chip bytes = a + b * B through two
compiled batches (least squares: XLA's buffer assignment is not linear in
B) and predicts the largest B (a multiple of 8) that fits the HBM, then
compiles it to confirm (halving the step towards the largest known fit if
it does not, at most 3 times).

Rows are cached in `--json` as they finish, so an interrupted run resumes
where it stopped. One ResNet-50 train step compile takes minutes to a
quarter of an hour on 2 cores: choose rows with --objectives, --topologies,
--batches, --programs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import traceback

# Compiling only, no chip: two runs at once (or CI beside a run) need not
# wait on libtpu's single-process lock file.
os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for _p in (REPO, HERE):
  if _p not in sys.path:
    sys.path.insert(0, _p)

import accelerator  # noqa: E402

from sspr_jax.core import results  # noqa: E402

# HBM per chip, GiB (public specifications).
HBM_GIB = {'v4': 32, 'v5e': 16, 'v5p': 95, 'v6e': 32}
# The device kind accelerator.PEAK_TFLOPS knows each generation by.
KINDS = {
  'v4': 'tpu v4',
  'v5e': 'tpu v5 lite',
  'v5p': 'tpu v5p',
  'v6e': 'tpu v6 lite',
}


def generation(topology: str) -> str:
  return topology.split(':')[0]


def _devices(topology: str):
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top

  return topologies.get_topology_desc(
    topology_name=topology, platform='tpu'
  ).devices


def _train_program(objective, topology, batch, shard, settings):
  """(compiled step, mesh size) of `objective` at per-chip `batch`."""
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import Mesh

  from sspr_jax.core import mesh as mesh_lib
  from sspr_jax.objectives import build_objective
  from sspr_jax.train import optim
  from sspr_jax.train import trainer

  devices = _devices(topology)
  mesh = Mesh(np.array(devices), ('data',))
  n = len(devices)
  config = accelerator.jax_config(
    objective, settings['backbone'], settings['size'], batch * n
  )
  config.model.dtype = settings['dtype']
  objective_ = build_objective(config)
  schedule = optim.learning_rate(
    config, steps_per_epoch=100, total_steps=1000, global_batch=batch * n
  )
  tx = optim.optimizer(config, schedule)
  data = mesh_lib.batch_sharding(mesh)
  s = config.input.canvas_size
  spec = {
    'image': jax.ShapeDtypeStruct(
      (batch * n, s, s, 3), jnp.uint8, sharding=data
    ),
    'size': jax.ShapeDtypeStruct((batch * n, 2), jnp.int32, sharding=data),
  }
  sharding = trainer.state_sharding(objective_, tx, spec, mesh, shard)
  state = jax.eval_shape(
    trainer.make_init(objective_, tx, spec, mesh, sharding), jax.random.key(0)
  )
  step = trainer.jit_train_step(
    objective_, tx, schedule, jax.random.key(1), mesh, sharding
  )
  return step.lower(state, spec).compile(), n


def _embed_program(topology, batch, settings):
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jax.sharding import Mesh

  from sspr_jax.evaluate import embed
  from sspr_jax.models import backbones

  devices = _devices(topology)
  mesh = Mesh(np.array(devices), ('data',))
  module = backbones.from_config(
    settings['backbone'], dtype=jnp.dtype(settings['dtype'])
  )
  size = settings['embed_size']
  variables = jax.eval_shape(
    lambda: module.init(
      jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False
    )
  )
  features = embed._features_fn(module, None, mesh)  # pylint: disable=protected-access
  images = jax.ShapeDtypeStruct(
    (batch * len(devices), size, size, 3), jnp.uint8
  )
  return features.lower(variables, images).compile(), len(devices)


def row_id(program, objective, topology, batch, shard) -> dict:
  """What names a row (`key`); the embedding has no objective or state."""
  return dict(
    program=program,
    objective=objective if program == 'train' else '-',
    topology=topology,
    per_chip_batch=batch,
    shard_state=shard if program == 'train' else None,
  )


def measure(program, objective, topology, batch, shard, settings) -> dict:
  """One row: compile the program, read its cost and memory analysis."""
  row = row_id(program, objective, topology, batch, shard)
  start = time.perf_counter()
  try:
    if program == 'train':
      compiled, chips = _train_program(
        objective, topology, batch, shard, settings
      )
    else:
      compiled, chips = _embed_program(topology, batch, settings)
  except Exception as e:  # pylint: disable=broad-except
    row.update(
      compiled=False,
      error=' '.join(str(e).split())[:300] or type(e).__name__,
      compile_s=time.perf_counter() - start,
    )
    traceback.print_exc()
    return row
  memory = accelerator.compiled_bytes(compiled)
  flops = accelerator.cost_flops(compiled.cost_analysis())
  gen = generation(topology)
  peak = accelerator.peak_tflops(KINDS.get(gen, gen))
  hbm = HBM_GIB.get(gen)
  row.update(
    compiled=True,
    chips=chips,
    compile_s=time.perf_counter() - start,
    flops_per_chip=flops,
    bytes=memory,
    hbm_gib=hbm,
    fits=(memory.get('total', 0) <= hbm * 2**30) if hbm else None,
    ideal_step_s=(flops / (peak * 1e12)) if peak else None,
  )
  return row


def key(row_or_args) -> str:
  r = row_or_args
  return (
    f'{r["program"]}|{r["objective"]}|{r["topology"]}|'
    f'{r["per_chip_batch"]}|{r["shard_state"]}'
  )


def largest_batch(
  rows: list[dict], hbm_gib: float, cap: int = 4096
) -> int | None:
  """The largest per-chip batch (a multiple of 8, at most `cap`) whose
  predicted bytes fit, from the least-squares line through the compiled
  rows' totals (XLA's buffer assignment is not linear in the batch: a
  smaller batch may take more temporaries); None without two batches or
  with a slope <= 0."""
  done = [
    (r['per_chip_batch'], r['bytes']['total'])
    for r in rows
    if r.get('compiled') and r.get('bytes')
  ]
  batches = [b for b, _ in done]
  if len(set(batches)) < 2:
    return None
  mean_b = sum(batches) / len(done)
  mean_t = sum(t for _, t in done) / len(done)
  slope = sum((b - mean_b) * (t - mean_t) for b, t in done) / sum(
    (b - mean_b) ** 2 for b in batches
  )
  if slope <= 0:
    return None
  fixed = mean_t - slope * mean_b
  best = int((hbm_gib * 2**30 - fixed) / slope)
  return min(cap, max(8, best // 8 * 8))


def confirm_largest(compile_at, rows: list[dict], hbm_gib, cap: int):
  """Compiles the predicted largest batch (`compile_at(batch) -> row`); if
  it does not fit (or compile), halves the step towards the largest batch
  known to fit, at most 3 times. Returns the confirmed row, or None."""
  best = largest_batch(rows, hbm_gib, cap)
  known = [r['per_chip_batch'] for r in rows if r.get('fits')]
  floor = max(known, default=0)
  for _ in range(3):
    if best is None or best <= floor:
      return None
    row = compile_at(best)
    row['predicted_largest'] = True
    if row.get('fits'):
      return row
    best = (floor + best) // 2 // 8 * 8
  return None


def table(rows: list[dict]) -> str:
  lines = [
    '| program | objective | topology | chips | B/chip | state | compiled | '
    'args | temp | total / HBM | GFLOP/chip | ideal step | compile |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  gib = lambda n: f'{n / 2**30:.2f}'  # noqa: E731
  for r in rows:
    if not r.get('compiled'):
      lines.append(
        f'| {r["program"]} | {r["objective"]} | {r["topology"]} | - | '
        f'{r["per_chip_batch"]} | {_state(r)} | no: {r.get("error", "")} '
        f'| - | - | - | - | - | {r.get("compile_s", 0):.0f} s |'
      )
      continue
    b = r['bytes']
    ideal = r.get('ideal_step_s')
    lines.append(
      f'| {r["program"]} | {r["objective"]} | {r["topology"]} | '
      f'{r["chips"]} | {r["per_chip_batch"]} | {_state(r)} | yes | '
      f'{gib(b["argument"])} GiB | {gib(b["temp"])} GiB | '
      f'{gib(b["total"])} / {r["hbm_gib"]} GiB{"" if r["fits"] else " (no)"} | '
      f'{r["flops_per_chip"] / 1e9:.0f} | '
      f'{"-" if ideal is None else f"{ideal * 1e3:.1f} ms"} | '
      f'{r["compile_s"]:.0f} s |'
    )
  return '\n'.join(lines)


def _state(r) -> str:
  if r['shard_state'] is None:
    return '-'
  return 'sharded' if r['shard_state'] else 'replicated'


SMOKE = dict(backbone='resnet_tiny', size=32, dtype='float32', embed_size=32)
FULL = dict(backbone='resnet50', size=224, dtype='bfloat16', embed_size=256)


def main(argv=None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--topologies', default='v5e:2x2')
  parser.add_argument('--objectives', default='simclr')
  parser.add_argument('--batches', default='64', help='per-chip batches')
  parser.add_argument('--programs', default='train,embed')
  parser.add_argument(
    '--states', default='replicated,sharded', help='train state layouts'
  )
  parser.add_argument(
    '--largest', action='store_true', help='predict and confirm the largest'
  )
  parser.add_argument(
    '--max_batch', type=int, default=4096, help='cap of --largest'
  )
  parser.add_argument('--json', default='', help='rows, cached and resumed')
  parser.add_argument('--smoke', action='store_true')
  args = parser.parse_args(argv)
  settings = SMOKE if args.smoke else FULL
  rows = []
  if args.json and os.path.exists(args.json):
    with open(args.json) as f:
      rows = json.load(f)
  done = {key(r) for r in rows}

  def save():
    if args.json:
      results.write_text(args.json, json.dumps(rows, indent=1))

  def run(program, objective, topology, batch, shard):
    want = row_id(program, objective, topology, batch, shard)
    if key(want) in done:
      return next(r for r in rows if key(r) == key(want))
    print(f'compiling {key(want)} ...', file=sys.stderr, flush=True)
    row = measure(program, objective, topology, batch, shard, settings)
    row['date'] = datetime.date.today().isoformat()
    rows.append(row)
    done.add(key(row))
    save()
    print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    return row

  batches = [int(b) for b in args.batches.split(',')]
  states = [s == 'sharded' for s in args.states.split(',')]
  for topology in args.topologies.split(','):
    for program in args.programs.split(','):
      objectives = args.objectives.split(',') if program == 'train' else ['-']
      for objective in objectives:
        for shard in states if program == 'train' else [None]:
          mine = [run(program, objective, topology, b, shard) for b in batches]
          hbm = HBM_GIB.get(generation(topology))
          if args.largest and hbm:
            confirm_largest(
              lambda b: run(program, objective, topology, b, shard),
              mine,
              hbm,
              args.max_batch,
            )
            save()
  print(table(rows))
  return rows


if __name__ == '__main__':
  main()
