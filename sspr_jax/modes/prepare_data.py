"""Mode 'prepare_data': build the crop datasets and print their counts.

With `config.data.source='synthetic'` the embedded shelf and rack photos are
generated first (into WORKDIR/raw, once per set of generator settings).
"""

import dataclasses
import json
import os

import ml_collections

from sspr_jax.core import results
from sspr_jax.data import prepare
from sspr_jax.modes import common
from sspr_jax.modes import outputs


@dataclasses.dataclass(frozen=True)
class Settings:
  data: ml_collections.ConfigDict
  datasets: tuple[str, ...] = ('sku110k_crops', 'rack_crops')
  config: ml_collections.ConfigDict | None = None  # recorded with the result


def parse(config: ml_collections.ConfigDict) -> Settings:
  return Settings(data=common.parse_data(config), config=config)


def run(settings: Settings, workdir: str) -> dict:
  """Builds the datasets and prints (and saves) a summary with counts, then
  the paths it wrote."""
  from data_builders import build as build_lib  # pylint: disable=g-import-not-at-top

  builders = prepare.build_datasets(settings.data, workdir, settings.datasets)
  summary = {}
  for name, builder in builders.items():
    print(build_lib.summary(builder))
    info = builder.info
    summary[name] = {
      'config': builder.builder_config.name,
      'data_dir': builder.data_dir,
      'splits': {s: info.splits[s].num_examples for s in info.splits},
      'counts': dict((info.metadata or {}).get('counts', {})),
    }
    if 'label' in info.features:
      summary[name]['num_classes'] = info.features['label'].num_classes
      print(f'  classes: {info.features["label"].num_classes}')
  os.makedirs(workdir, exist_ok=True)
  # TFDS builds each dataset in a temporary folder and renames it; the
  # summary is recorded complete beside them (core.results).
  with results.Staging(workdir, 'prepare_data', settings.config) as stage:
    with open(stage.path('data_summary.json'), 'w') as f:
      json.dump(summary, f, indent=2, default=str)
  path = os.path.join(workdir, 'data_summary.json')
  outputs.print_wrote(
    [('data_summary.json', path)]
    + [
      (name, builder.data_dir, 'TFDS dataset')
      for name, builder in builders.items()
    ]
  )
  return summary
