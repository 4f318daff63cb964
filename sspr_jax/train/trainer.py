"""Pre-training: one jitted train step over a 'data' mesh, Orbax checkpoints.

The same program runs on one CPU, one GPU or many hosts: inputs are global
`jax.Array`s sharded along the batch, the state is replicated (or, with
`config.shard_state`, split over the devices and gathered inside the step),
so batch statistics, contrastive negatives and queue updates span the
global batch.

The trainer knows objectives only through this contract (see
`sspr_jax/objectives/`):
  objective.init(rng, batch_spec) -> (params, batch_stats, extra)
  objective.views(rng, batch) -> views     # on device, from the uint8 batch
  objective.loss(params, batch_stats, extra, views, rng)
      -> (loss, (metrics, new_batch_stats, new_extra))
Metrics may include 'spread' (collapse monitor of normalised embeddings).
Parameters and BatchNorm statistics of the backbone live under 'backbone';
evaluators are handed those (`evaluator.run(variables) -> metrics`).
"""

import functools
import logging
import math
import signal
import time
from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from sspr_jax.core import checkpoint as checkpoint_lib
from sspr_jax.core import mesh as mesh_lib
from sspr_jax.core import metrics as metrics_lib
from sspr_jax.core import results
from sspr_jax.train import optim

# Below this spread of normalised embeddings the batch has (almost) collapsed
# to one point: ~1 when embeddings are spread over the sphere, 0 when equal.
COLLAPSE_SPREAD = 0.05


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  extra: Any
  # -1 while every step was finite, else the first step whose loss or
  # gradients were NaN/Inf; such steps leave the state unchanged.
  nonfinite_step: jax.Array


class NonFiniteError(FloatingPointError):
  pass


def make_train_step(
  objective, tx: optax.GradientTransformation, schedule, base_rng: jax.Array
):
  """The pure train step: (state, uint8 batch) -> (state, metrics)."""

  def train_step(state: TrainState, batch: dict):
    # Randomness depends only on (seed, step): a resumed run sees the same.
    rng = jax.random.fold_in(base_rng, state.step)
    view_rng, loss_rng = jax.random.split(rng)
    views = objective.views(view_rng, batch)

    def loss_fn(params):
      return objective.loss(
        params, state.batch_stats, state.extra, views, loss_rng
      )

    (loss, (metrics, batch_stats, extra)), grads = jax.value_and_grad(
      loss_fn, has_aux=True
    )(state.params)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updated = state.replace(
      params=params, batch_stats=batch_stats, opt_state=opt_state, extra=extra
    )
    # A non-finite step keeps the last good state, so no checkpoint is bad.
    kept = jax.tree.map(
      lambda new, old: jnp.where(finite, new, old), updated, state
    )
    nonfinite_step = jnp.where(
      (state.nonfinite_step < 0) & ~finite, state.step, state.nonfinite_step
    )
    new_state = kept.replace(step=state.step + 1, nonfinite_step=nonfinite_step)
    metrics = dict(
      metrics,
      loss=loss,
      grad_norm=grad_norm,
      learning_rate=schedule(state.step),
    )
    return new_state, metrics

  return train_step


def _fresh_state(objective, tx, batch_spec, rng, backbone=None):
  params, batch_stats, extra = objective.init(rng, batch_spec, backbone)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=batch_stats,
    opt_state=tx.init(params),
    extra=extra,
    nonfinite_step=jnp.full((), -1, jnp.int32),
  )


def state_sharding(
  objective, tx: optax.GradientTransformation, batch_spec, mesh, shard=False
):
  """The TrainState's shardings: replicated, or with `shard` (config.
  shard_state) its parameters, optimizer state, extra state (MoCo's key
  encoder and queue) and BatchNorm statistics split over the data axis
  (`mesh.state_sharding`)."""
  abstract = jax.eval_shape(
    functools.partial(_fresh_state, objective, tx, batch_spec),
    jax.random.key(0),
  )
  return mesh_lib.state_sharding(abstract, mesh, shard)


def make_init(
  objective,
  tx: optax.GradientTransformation,
  batch_spec,
  mesh,
  sharding=None,
):
  """Jitted (rng, backbone=None) -> fresh TrainState over `mesh`, laid out
  as `sharding` (default: replicated); `backbone`: trained {'params',
  'batch_stats'} to start from."""
  return jax.jit(
    functools.partial(_fresh_state, objective, tx, batch_spec),
    out_shardings=sharding or mesh_lib.replicated(mesh),
  )


def jit_train_step(
  objective,
  tx: optax.GradientTransformation,
  schedule,
  base_rng,
  mesh,
  sharding=None,
):
  """The jitted train step `train` runs: the state laid out as `sharding`
  (default: replicated) and donated, the batch split along the data axis
  (benchmarks/accelerator.py times this very program)."""
  replicated = mesh_lib.replicated(mesh)
  state = sharding or replicated
  return jax.jit(
    make_train_step(objective, tx, schedule, base_rng),
    in_shardings=(state, mesh_lib.batch_sharding(mesh)),
    out_shardings=(state, replicated),
    donate_argnums=(0,),
  )


def planned_steps(config, num_examples: int) -> tuple[int, int]:
  """(steps per epoch, total steps) of `config` on `num_examples`."""
  steps_per_epoch = num_examples // config.batch_size
  if steps_per_epoch == 0:
    raise ValueError(
      f'The dataset has {num_examples} examples, fewer than one '
      f'global batch (config.batch_size={config.batch_size}).'
    )
  total = config.get('total_steps', 0) or int(
    math.ceil(config.num_epochs * steps_per_epoch)
  )
  return steps_per_epoch, total


class _Preemption:
  """Turns SIGTERM into a flag that the loop checks between steps."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread: leave signals alone.
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _scalars(prefix: str, metrics: dict) -> dict:
  """The numeric scalars of `metrics`, keys prefixed (for the metric log)."""
  return {
    prefix + k: v
    for k, v in metrics.items()
    if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
  }


def _name(evaluator) -> str:
  return getattr(evaluator, 'name', '') or type(evaluator).__name__


def _due(done: int, every: int, total: int) -> bool:
  """Periodic work runs every `every` steps and after the last one."""
  return bool(every) and (done % every == 0 or done == total)


def train(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  objective,
  loader,
  batch_spec: dict,
  num_examples: int,
  evaluators: Sequence[tuple[Any, int]] = (),
  init_backbone: Any = None,
) -> TrainState:
  """Trains `objective` on `loader`, resuming from WORKDIR's latest checkpoint.

  Args:
    config: needs batch_size (global), num_epochs or total_steps, seed,
      optimizer, schedule, log_every_steps, checkpoint_every_steps,
      keep_checkpoints.
    workdir: checkpoints, metrics.jsonl and TensorBoard events go here.
    objective: see the module docstring.
    loader: `loader.iter_from(step)` yields this process's numpy batches
      from batch `step` on, the same ones an uninterrupted run would see.
    batch_spec: the GLOBAL batch's `jax.ShapeDtypeStruct`s by key (the
      arrays the train step gets; the state is initialised from them).
    num_examples: size of the training set (for epochs and the schedule).
    evaluators: (evaluator, every_steps) pairs; `evaluator.run(variables)`
      gets the backbone's {'params', 'batch_stats'} every `every_steps`
      steps and after the last, and its metrics are logged with the train
      metrics.
    init_backbone: {'params', 'batch_stats'} of a trained backbone that a
      fresh run starts from (`config.model.init_from`); a resumed run
      restores its checkpoint instead.
  Returns:
    The final train state.
  Raises:
    NonFiniteError: a step's loss or gradients were NaN/Inf.
    checkpoint.CheckpointWriteError: a checkpoint write failed (disk full,
      no permission); the message names the step and the directory, earlier
      checkpoints are intact and a rerun resumes from the latest of them.
  """
  mesh = mesh_lib.data_mesh()
  steps_per_epoch, total_steps = planned_steps(config, num_examples)
  schedule = optim.learning_rate(
    config,
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps,
    global_batch=config.batch_size,
  )
  tx = optim.optimizer(config, schedule)
  init_rng, train_rng = jax.random.split(jax.random.key(config.seed))

  checkpoints = checkpoint_lib.Checkpoints(
    workdir, max_to_keep=config.get('keep_checkpoints', 3)
  )

  sharding = state_sharding(
    objective, tx, batch_spec, mesh, config.get('shard_state', False)
  )
  init = make_init(objective, tx, batch_spec, mesh, sharding)
  # A resumed run restores onto the fresh state's shapes and shardings
  # (either layout: a checkpoint does not record one).
  state = init(init_rng, init_backbone)
  restored, _, start = checkpoints.restore_latest_good(state)
  if restored is not None:
    state = restored
    logging.info('Resumed from %s at step %d.', checkpoints.directory, start)
  start = int(start or 0)
  if start >= total_steps:
    logging.info('Already trained for %d steps; nothing to do.', total_steps)
    checkpoints.close()
    return state
  it = loader.iter_from(start)

  step_fn = jit_train_step(objective, tx, schedule, train_rng, mesh, sharding)
  # Compiled before the loop, so the minutes of a large model's compile are
  # said and timed instead of passing as a silent first step.
  logging.info('Compiling the train step...')
  compile_start = time.perf_counter()
  step_fn = step_fn.lower(
    state,
    {
      k: jax.ShapeDtypeStruct(
        v.shape, v.dtype, sharding=mesh_lib.batch_sharding(mesh)
      )
      for k, v in batch_spec.items()
    },
  ).compile()
  logging.info(
    'Compiled the train step in %.1f s.', time.perf_counter() - compile_start
  )
  # A run killed after its last checkpoint logged steps it will redo: they
  # are dropped, so metrics.jsonl holds each step once.
  writer = metrics_lib.MetricsWriter(
    workdir, enabled=jax.process_index() == 0, resume_step=start
  )
  # TensorBoard shows the run's resolved config beside its curves.
  writer.text(
    'config',
    '```\n' + config.to_json_best_effort(indent=2, sort_keys=True) + '\n```',
    start,
  )
  writer.hparams(
    config.to_dict(),
    ['train/loss']
    + [
      f'eval/{column}'
      for evaluator, _ in evaluators
      for column in getattr(evaluator, 'columns', ())
    ],
  )
  meta = {
    'config': config.to_dict(),
    'total_steps': total_steps,
    'steps_per_epoch': steps_per_epoch,
  }

  def check_finite():
    bad = int(jax.device_get(state.nonfinite_step))
    if bad >= 0:
      raise NonFiniteError(
        f'Loss or gradients became NaN/Inf at step {bad}; stopped. The last '
        f'good checkpoint is kept in {checkpoints.directory} (step '
        f'{checkpoints.latest_step()}). Try a lower learning rate.'
      )

  def save(step):
    check_finite()  # Never save a state that went through a bad step.
    checkpoints.save(step, state, meta)

  log_every = config.get('log_every_steps', 50)
  ckpt_every = config.get('checkpoint_every_steps', 1000)
  bar = tqdm.tqdm(
    total=total_steps,
    initial=start,
    unit='step',
    disable=jax.process_index() != 0,
    dynamic_ncols=True,
  )
  t0, seen = time.perf_counter(), 0
  failed = True
  try:
    with _Preemption() as preemption:
      for step in range(start, total_steps):
        host_batch = next(it)
        batch = mesh_lib.shard_batch(
          {k: host_batch[k] for k in batch_spec}, mesh
        )
        state, metrics = step_fn(state, batch)
        seen += config.batch_size
        done = step + 1
        if _due(done, log_every, total_steps):
          metrics = jax.device_get(metrics)  # The only host sync: log steps.
          elapsed = time.perf_counter() - t0
          metrics['images_per_second'] = seen / max(elapsed, 1e-9)
          t0, seen = time.perf_counter(), 0
          writer.write(done, metrics, tensorboard_prefix='train/')
          bar.set_postfix(
            loss=f'{metrics["loss"]:.4f}',
            img_s=f'{metrics["images_per_second"]:.1f}',
          )
          check_finite()
          spread = metrics.get('spread')
          if spread is not None and spread < COLLAPSE_SPREAD:
            logging.warning(
              'Embeddings collapsing at step %d: spread %.4f '
              '(1 = spread out, 0 = all equal).',
              done,
              spread,
            )
        bar.update(1)
        due = [e for e, every in evaluators if _due(done, every, total_steps)]
        if due:
          check_finite()
          # One dict for all: evaluators of a gallery share its embeddings.
          variables = {
            'params': state.params['backbone'],
            'batch_stats': state.batch_stats['backbone'],
          }
          names = ', '.join(_name(e) for e in due)
          bar.set_description(f'evaluating ({names})')
          eval_start, shown = time.perf_counter(), {}
          for evaluator in due:
            scores = evaluator.run(variables)
            writer.write(done, _scalars('eval/', scores))
            shown.update(
              (k, scores[k])
              for k in getattr(evaluator, 'columns', ())
              if isinstance(scores.get(k), float)
            )
          seconds = time.perf_counter() - eval_start
          t0 += seconds  # images_per_second counts training time only.
          bar.set_description('')
          with tqdm.tqdm.external_write_mode():  # A line above the bar.
            logging.info(
              'Step %d: evaluated (%s) in %.1f s%s',
              done,
              names,
              seconds,
              ''.join(f', {k} {v:.4f}' for k, v in shown.items()) + '.',
            )
        if _due(done, ckpt_every, total_steps) or preemption.requested:
          save(done)
          results.fault_point('train:checkpoint_saved')
        if preemption.requested:
          logging.warning('SIGTERM: saved step %d, exiting.', done)
          break
    failed = False
  finally:
    bar.close()
    writer.close()
    # Waits for the last asynchronous write: a failed one raises
    # CheckpointWriteError, unless another error is already on its way out.
    checkpoints.close(raise_errors=not failed)
  return state
