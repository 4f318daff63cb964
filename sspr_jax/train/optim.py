"""Optimisers and learning-rate schedules from a config, built with optax.

Config fields (`config.optimizer`):
  name: 'sgd' | 'lars'; lr: base learning rate; scale_lr_by_batch: multiply lr
  by global_batch / 256 (SimCLR's rule); momentum; nesterov; weight_decay;
  decay_bn_and_bias: apply weight decay (and, for LARS, trust-ratio scaling)
  to BatchNorm parameters and biases too (the references exclude them).
Config fields (`config.schedule`):
  name: 'step' | 'cosine' | 'constant'; warmup_epochs (or warmup_fraction of
  all steps); for 'step': decay_epochs (sorted) and decay_factor.
"""

from typing import Any, Callable

import jax
import ml_collections
import optax

Schedule = Callable[[Any], Any]
OPTIMIZERS = ('sgd', 'lars')
SCHEDULES = ('step', 'cosine', 'constant')


def decay_mask(params) -> Any:
  """True for weights that take weight decay: kernels, not biases or BN.

  A parameter counts as a bias or BN parameter when it is 1-D, which holds
  for Flax Dense/Conv biases and BatchNorm scale/bias.
  """
  return jax.tree.map(lambda p: p.ndim > 1, params)


def learning_rate(
  config: ml_collections.ConfigDict,
  *,
  steps_per_epoch: int,
  total_steps: int,
  global_batch: int,
) -> Schedule:
  """The schedule of `config.schedule` around the peak of `config.optimizer`."""
  opt, sch = config.optimizer, config.schedule
  peak = opt.lr * (
    global_batch / 256 if opt.get('scale_lr_by_batch', False) else 1
  )
  if sch.get('warmup_fraction', 0.0):
    warmup = int(round(sch.warmup_fraction * total_steps))
  else:
    warmup = int(round(sch.get('warmup_epochs', 0) * steps_per_epoch))
  if sch.name == 'cosine':
    return optax.warmup_cosine_decay_schedule(
      0.0,
      peak,
      warmup_steps=warmup,
      decay_steps=max(total_steps, warmup + 1),
      end_value=0.0,
    )
  if sch.name == 'step':
    boundaries = {
      int(round(e * steps_per_epoch)): sch.decay_factor
      for e in sch.decay_epochs
    }
    main = optax.piecewise_constant_schedule(peak, boundaries)
  elif sch.name == 'constant':
    main = optax.constant_schedule(peak)
  else:
    raise ValueError(
      f'Unknown config.schedule.name {sch.name!r}; '
      "valid: 'step', 'cosine', 'constant'."
    )
  if not warmup:
    return main
  # The decay boundaries stay in absolute steps: join_schedules shifts the
  # second schedule's step by the warm-up length, so undo that.
  ramp = optax.linear_schedule(0.0, peak, warmup)
  return optax.join_schedules([ramp, lambda s: main(s + warmup)], [warmup])


def optimizer(
  config: ml_collections.ConfigDict, schedule: Schedule
) -> optax.GradientTransformation:
  """SGD (momentum / nesterov, torch-style coupled weight decay) or LARS."""
  opt = config.optimizer
  mask = None if opt.get('decay_bn_and_bias', False) else decay_mask
  if opt.name == 'sgd':
    return optax.chain(
      optax.add_decayed_weights(opt.weight_decay, mask=mask),
      optax.sgd(schedule, momentum=opt.momentum, nesterov=opt.nesterov),
    )
  if opt.name == 'lars':
    return optax.lars(
      schedule,
      weight_decay=opt.weight_decay,
      weight_decay_mask=mask if mask else True,
      trust_coefficient=opt.get('trust_coefficient', 0.001),
      trust_ratio_mask=mask if mask else True,
      momentum=opt.momentum,
      nesterov=opt.nesterov,
    )
  raise ValueError(
    f"Unknown config.optimizer.name {opt.name!r}; valid: 'sgd', 'lars'."
  )
