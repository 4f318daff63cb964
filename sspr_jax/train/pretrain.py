"""Mode 'pretrain': build/open the unlabeled dataset, then train the objective."""

import logging

import ml_collections

from sspr_jax.core import mesh as mesh_lib
from sspr_jax.data import pipeline
from sspr_jax.data import prepare
from sspr_jax.evaluate import run as eval_run
from sspr_jax.objectives import build_objective
from sspr_jax.train import trainer


def make_loader(config: ml_collections.ConfigDict, source) -> pipeline.Loader:
  """This process's loader of `config.input`: canvases of the crops."""
  shorter_side = config.input.get('shorter_side', 0) or None
  return pipeline.make_loader(
    source,
    batch_size=mesh_lib.per_process_batch(config.batch_size),
    image_size=config.input.canvas_size,
    shorter_side=shorter_side,
    seed=config.seed,
    resize='canvas',
    worker_count=config.input.worker_count,
  )


def run(config: ml_collections.ConfigDict, workdir: str):
  objective = build_objective(config)  # Fails fast on a bad objective/config.
  dataset = config.input.get('dataset', 'sku110k_crops')
  prepare.build_datasets(config.data, workdir, which=(dataset,))
  source = pipeline.open_source(
    dataset,
    split=config.input.split,
    data_dir=prepare.data_dir(config.data, workdir),
    config=prepare.dataset_config(config.data, dataset),
  )
  loader = make_loader(config, source)
  evaluators = []
  if config.get('eval_every_steps', 0):
    evaluators.append(
      (
        eval_run.periodic_evaluator(
          config, workdir, objective.network.backbone
        ),
        config.eval_every_steps,
      )
    )
  logging.info(
    'Pre-training %s on %d images (%s, %s).',
    config.objective,
    len(source),
    dataset,
    config.input.split,
  )
  return trainer.train(
    config,
    workdir,
    objective=objective,
    loader=loader,
    batch_spec=loader.batch_spec(config.batch_size),
    num_examples=len(source),
    evaluators=evaluators,
  )
