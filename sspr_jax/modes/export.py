"""Mode 'export': a backbone as files a serving stack runs without sspr_jax.

Writes WORKDIR/export/ (staged, `core.results`):
- `embedding.stablehlo`: `jax.export`, serialised. uint8 crops
  [batch, S, S, 3] (any batch) -> float32 [batch, C], L2-normalised: the
  evaluation preprocessing (normalisation; resizing when
  `export.input_size` differs from S) and the backbone in one program.
  `jax.export.deserialize(open(p, 'rb').read()).call(crops)` runs it with
  jax alone.
- `model_card.json`: architecture, input, normalisation, output size, the
  training run and step, and the gallery mAP of that step (null, with the
  reason, when there is none).

Config (configs/export.py): `export.backbone` in the grammar of
`evaluate/backbone_names.py` ('' = WORKDIR's latest checkpoint);
`export.image_size` (0: the run's evaluation size, `evaluate.image_size` of
its config; a baseline's: this config's); `export.input_size` (0: the
image size).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

import jax
import ml_collections
import numpy as np

from sspr_jax.core import config_check
from sspr_jax.core import metrics as metrics_lib
from sspr_jax.core import results
from sspr_jax.data import augment
from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import export as export_lib
from sspr_jax.models import backbones
from sspr_jax.modes import outputs

log = logging.getLogger(__name__)

OUT_DIR = 'export'
PROGRAM = 'embedding.stablehlo'
CARD = 'model_card.json'


@dataclasses.dataclass(frozen=True)
class Settings:
  backbone: backbone_names.Name | None  # None: WORKDIR's latest checkpoint
  image_size: int  # 0: the run's evaluation size
  input_size: int  # 0: image_size
  default_size: int  # config.evaluate.image_size, for baselines
  architecture: dict  # of the random baseline
  seed: int = 0
  config: ml_collections.ConfigDict | None = None  # recorded with the result


def parse(config: ml_collections.ConfigDict) -> Settings:
  if config_check.get(config, 'export') is config_check.MISSING:
    raise config_check.ConfigError(
      'The export mode needs an `export` section (configs/export.py).'
    )
  value = config_check.get(config, 'export.backbone', '')
  if not isinstance(value, str):
    config_check.fail('export.backbone', value, 'must be a string.')
  name = (
    config_check.wrap('export.backbone', value, backbone_names.parse)
    if value
    else None
  )
  sizes = {}
  for key in ('image_size', 'input_size'):
    got = config_check.integer(config, f'export.{key}', minimum=0)
    sizes[key] = 0 if got is config_check.MISSING else got
  default = config_check.get(config, 'evaluate.image_size', 224)
  return Settings(
    backbone=name,
    default_size=default,
    architecture=backbones.architecture(config.get('model', {})),
    seed=config.get('seed', 0),
    config=config,
    **sizes,
  )


def _gallery_map(run: str, step: int) -> tuple[float | None, str]:
  """(full-gallery cosine mAP of the run's `step`, where it was read)."""
  try:
    with open(os.path.join(run, 'metrics.json')) as f:
      for r in json.load(f):
        if r.get('run') == run and r.get('step') == step:
          value = r['metrics'].get('full_map/cosine')
          if value is not None:
            return float(value), 'metrics.json (the evaluate mode)'
  except (OSError, ValueError, KeyError, TypeError):
    pass
  try:
    for r in metrics_lib.read_metrics(run):
      if r.get('step') == step and 'eval/full_map/cosine' in r:
        return float(r['eval/full_map/cosine']), 'metrics.jsonl (periodic)'
  except (OSError, ValueError):
    pass
  return None, (
    f'no gallery mAP of step {step} in {run} (metrics.json of the evaluate '
    'mode, or eval/full_map/cosine in metrics.jsonl): evaluate it first'
  )


def run(settings: Settings, workdir: str) -> dict:
  name = settings.backbone or backbone_names.parse(workdir, kinds=('run',))
  backbone = backbone_names.load(
    name, architecture=settings.architecture, seed=settings.seed
  )
  card = {'backbone': backbone.name, 'kind': name.kind}
  image_size = settings.image_size
  if name.kind == 'run':
    step = name.steps[-1]
    saved = backbone_names.meta(name.run, step).get('config', {})
    run_size = saved.get('evaluate', {}).get('image_size')
    image_size = image_size or run_size or settings.default_size
    value, where = _gallery_map(name.run, step)
    card.update(
      run=name.run,
      step=step,
      objective=saved.get('objective'),
      gallery_map={'full_map/cosine': value, 'source': where},
    )
  else:
    image_size = image_size or settings.default_size
    card['gallery_map'] = {
      'full_map/cosine': None,
      'source': 'a baseline has no training run to read it from',
    }
  input_size = settings.input_size or image_size
  fn = export_lib.embedding_function(backbone, image_size)
  log.info(
    'Exporting %s: uint8 [batch, %d, %d, 3] -> embeddings.',
    backbone.name,
    input_size,
    input_size,
  )
  program = export_lib.stablehlo(fn, input_size, input_size)
  probe = np.zeros((1, input_size, input_size, 3), np.uint8)
  dim = int(jax.eval_shape(fn, probe).shape[-1])
  normalization = (
    backbones.normalization(backbone.architecture)
    if (backbone.architecture)
    else {}
  )
  card.update(
    architecture=backbone.architecture,
    input={
      'shape': [None, input_size, input_size, 3],
      'dtype': 'uint8',
      'layout': 'NHWC, RGB',
      'preprocessing': (
        f'inside the program: resized (shorter side {image_size}, bilinear '
        f'antialiased) and centre-cropped to {image_size}'
        if input_size != image_size
        else f'none inside: give crops resized (shorter side {image_size}) '
        f'and centre-cropped to {image_size}, as the evaluate mode does'
      ),
    },
    image_size=image_size,
    normalization={
      'mean': list(normalization.get('mean', augment.IMAGENET_MEAN)),
      'std': list(normalization.get('std', augment.IMAGENET_STD)),
      'of': 'x / 255, per channel, inside the program',
    },
    output={'shape': [None, dim], 'dtype': 'float32', 'l2_normalised': True},
    formats={PROGRAM: 'jax.export (StableHLO), polymorphic batch'},
    jax_version=jax.__version__,
  )
  if jax.process_index() == 0:
    with results.Staging(
      workdir, 'export', settings.config, owned=(OUT_DIR,)
    ) as stage:
      with open(stage.path(OUT_DIR, PROGRAM), 'wb') as f:
        f.write(program)
      with open(stage.path(OUT_DIR, CARD), 'w') as f:
        json.dump(card, f, indent=2)
  outputs.print_wrote(written(workdir))
  return card


def written(workdir: str) -> list[tuple[str, str, str]]:
  out = os.path.join(workdir, OUT_DIR)
  return [
    (PROGRAM, os.path.join(out, PROGRAM), 'jax.export.deserialize(...).call'),
    (CARD, os.path.join(out, CARD), ''),
  ]
