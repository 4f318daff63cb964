"""Mode 'pretrain': build/open the crops dataset, then train the objective."""

import logging

import jax
import ml_collections

from sspr_jax.data import pipeline
from sspr_jax.data import prepare
from sspr_jax.evaluate import run as eval_run
from sspr_jax.objectives import build_objective
from sspr_jax.train import trainer


def run(config: ml_collections.ConfigDict, workdir: str):
  objective = build_objective(config)  # Fails fast on a bad objective/config.
  prepare.build_datasets(config.data, workdir, which=('sku110k_crops',))
  source = pipeline.open_source(
    'sku110k_crops',
    split=config.input.split,
    data_dir=prepare.data_dir(config.data, workdir),
    config=config.data.sku110k_config,
  )
  per_process = config.batch_size // jax.process_count()

  def batches(start_step: int):
    # Batch i of the loader is the same whatever step the run starts at, so
    # a resumed run sees exactly the batches an uninterrupted one would.
    return pipeline.make_loader(
      source,
      batch_size=per_process,
      image_size=config.input.image_size,
      seed=config.seed,
      resize=config.input.resize,
      worker_count=config.input.worker_count,
    ).iter_from(start_step)

  evaluate = None
  if config.get('eval_every_steps', 0):
    evaluate = eval_run.periodic_evaluator(
      config, workdir, objective.network.backbone
    )
  logging.info(
    'Pre-training %s on %d crops (%s).',
    config.objective,
    len(source),
    config.input.split,
  )
  return trainer.train(
    config,
    workdir,
    objective=objective,
    batches=batches,
    num_examples=len(source),
    evaluate=evaluate,
  )
