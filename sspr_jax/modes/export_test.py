"""The export mode: a program jax alone runs, equal to the evaluate mode's
embeddings, and a model card that names its run, step and mAP."""

import json
import subprocess
import sys

import numpy as np
import pytest

from configs import export as export_config
from sspr_jax import modes
from sspr_jax.core import config_check
from sspr_jax.core import results
from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.evaluate import export as export_lib
from sspr_jax.testing import child_env
from sspr_jax.testing import tiny_config
from sspr_jax.testing import tiny_crops
from sspr_jax.testing import train_tiny

# Reloads the program with jax only and embeds the crops saved beside it.
_RELOAD = """
import sys
import jax
import numpy as np
program = jax.export.deserialize(open(sys.argv[1], 'rb').read())
crops = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(program.call(crops)))
leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('sspr_jax', 'flax'))
assert not leaked, leaked
"""


def _export(config, workdir):
  ((module, settings),) = modes.parse(config)
  return module.run(settings, str(workdir))


def _crops(source, size, n=5) -> np.ndarray:
  """The first `n` crops as the evaluate mode feeds them, uint8."""
  from sspr_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  loader = pipeline.make_loader(
    source,
    batch_size=n,
    image_size=size,
    seed=0,
    shuffle=False,
    num_epochs=1,
    drop_remainder=False,
    resize='shorter_center_crop',
    keys=(),
  )
  return np.asarray(next(iter(loader))['image'])


def test_a_run_exports_one_program_jax_alone_runs(tiny_datasets, tmp_path):
  run = tmp_path / 'run'
  config = tiny_config('simclr', total_steps=2, checkpoint_every_steps=2)
  config.evaluate.image_size = 32
  crops = tiny_crops(tiny_datasets)
  train_tiny(config, run, crops)
  export = export_config.get_config()
  export.export.backbone = str(run)
  card = _export(export, tmp_path / 'out')
  folder = tmp_path / 'out' / 'export'
  assert json.loads((folder / 'model_card.json').read_text()) == json.loads(
    json.dumps(card)
  )
  assert card['run'] == str(run) and card['step'] == 2
  assert card['image_size'] == 32  # The run's evaluation size.
  assert card['input']['shape'] == [None, 32, 32, 3]
  assert card['gallery_map']['full_map/cosine'] is None  # Never evaluated.
  assert 'evaluate it first' in card['gallery_map']['source']
  assert results.is_complete(str(tmp_path / 'out'), 'export', export)

  images = _crops(crops, 32)
  np.save(tmp_path / 'crops.npy', images)
  subprocess.run(
    [sys.executable, '-c', _RELOAD, str(folder / 'embedding.stablehlo')]
    + [str(tmp_path / 'crops.npy'), str(tmp_path / 'out.npy')],
    check=True,
    env=child_env(),
    timeout=300,
  )
  exported = np.load(tmp_path / 'out.npy')
  assert exported.shape == (len(images), card['output']['shape'][1])
  # The evaluate mode's embeddings of the same crops (its own pipeline).
  backbone = backbone_names.load(backbone_names.parse(str(run)))
  want = embed_lib.embed(
    backbone, _Source(images), image_size=32, batch_size=8, keys=()
  )['features_normalized']
  np.testing.assert_allclose(exported, want, atol=1e-5)


class _Source:
  def __init__(self, images):
    self.images = images

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    return {'image': self.images[i]}


def test_another_input_size_is_resized_inside_and_a_baseline_has_no_run(
  tmp_path,
):
  export = export_config.get_config()
  export.model.backbone = 'resnet_tiny'
  export.export.update(backbone='random', image_size=16, input_size=24)
  card = _export(export, tmp_path)
  assert card['input']['shape'] == [None, 24, 24, 3]
  assert 'resized' in card['input']['preprocessing']
  assert card['gallery_map']['full_map/cosine'] is None
  assert 'baseline' in card['gallery_map']['source']
  # The same crop at 24 px or already at 16 px: the program resizes it.
  program = (tmp_path / 'export' / 'embedding.stablehlo').read_bytes()
  import jax  # pylint: disable=g-import-not-at-top

  exported = jax.export.deserialize(program)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 24, 24, 3), np.uint8)
  got = np.asarray(exported.call(images))
  backbone = backbone_names.load(
    backbone_names.parse('random'), architecture='resnet_tiny'
  )
  resized = np.asarray(export_lib.resize_and_crop(images, 16))
  want = export_lib.embedding_function(backbone, 16)(
    np.clip(np.round(resized), 0, 255).astype(np.uint8)
  )
  np.testing.assert_allclose(got, np.asarray(want), atol=0.05)
  np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
  'key,value,message',
  [
    ('backbone', 'imagenet_vgg', 'valid: a pre-training workdir'),
    ('image_size', -1, 'export.image_size'),
  ],
)
def test_bad_values_are_one_line(key, value, message):
  export = export_config.get_config()
  export.export[key] = value
  with pytest.raises(config_check.ConfigError, match=message):
    modes.parse(export)
