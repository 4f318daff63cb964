"""`config.model.init_from`: pre-training starts from trained weights.

The loaded backbone equals its source bit for bit, and its step-0
embeddings, read back through the evaluation path of a run's checkpoint,
equal the frozen source's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sspr_jax.core import checkpoint as checkpoint_lib
from sspr_jax.core import config_check
from sspr_jax.core import mesh as mesh_lib
from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import embed
from sspr_jax.models import backbones
from sspr_jax.models import torch_import
from sspr_jax.modes import pretrain
from sspr_jax.train import trainer
from sspr_jax.testing import tiny_config, tiny_crops
from sspr_jax.testing import train_tiny as _train

SPEC = {
  'image': jax.ShapeDtypeStruct((16, 40, 40, 3), jnp.uint8),
  'size': jax.ShapeDtypeStruct((16, 2), jnp.int32),
}


@pytest.fixture(scope='module')
def crops(tiny_datasets):
  return tiny_crops(tiny_datasets)


def _step0(config):
  """The fresh train state of `config`, as the pretrain mode makes it."""
  settings = pretrain.parse(config)
  variables = pretrain.initial_backbone(settings, SPEC)
  init = trainer.make_init(
    settings.objective, optax.sgd(0.1), SPEC, mesh_lib.data_mesh()
  )
  return settings, init(jax.random.key(0), variables)


def _backbone_of(state):
  return {
    'params': state.params['backbone'],
    'batch_stats': state.batch_stats['backbone'],
  }


def _assert_tree_equal(got, want):
  """`got` holds exactly the entries of `want` (a source may hold more, e.g.
  an ImageNet classifier), bit for bit."""
  flat_got = dict(jax.tree_util.tree_flatten_with_path(got)[0])
  flat_want = dict(jax.tree_util.tree_flatten_with_path(want)[0])
  assert set(flat_got) <= set(flat_want)
  for path, value in flat_got.items():
    np.testing.assert_array_equal(np.asarray(value), flat_want[path])


def _features(backbone, images):
  fn = embed._features_fn(  # pylint: disable=protected-access
    backbone.module, backbone.normalize, mesh_lib.data_mesh()
  )
  return np.asarray(fn(backbone.variables, images))


def _save_step0(state, config, workdir):
  checkpoints = checkpoint_lib.Checkpoints(str(workdir))
  checkpoints.save(0, state, {'config': config.to_dict()})
  checkpoints.close()


def test_imagenet_efficientnet_lite0(tmp_path):
  config = tiny_config(
    'simclr',
    **{
      'model.backbone': 'efficientnet_lite0',
      'model.init_from': 'imagenet_efficientnet_lite0',
    },
  )
  _, state = _step0(config)
  source = backbone_names.imagenet_backbone('efficientnet_lite0')
  got = _backbone_of(state)
  _assert_tree_equal(got, source.variables)
  assert 'fc' not in got['params']  # The ImageNet classifier is dropped.
  assert set(got['params']) == set(source.variables['params']) - {'fc'}

  # Step 0 through a run's checkpoint and the evaluation path: the same
  # module, normalisation and features as the frozen baseline.
  _save_step0(state, config, tmp_path)
  loaded = backbone_names.load_backbone(str(tmp_path))
  assert loaded.architecture['backbone'] == 'efficientnet_lite0'
  images = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), np.uint8)
  np.testing.assert_array_equal(
    _features(loaded, images), _features(source, images)
  )


def test_another_runs_checkpoint_seeds_moco_and_its_key_encoder(
  tmp_path, crops
):
  source_run = tmp_path / 'rotnet'
  _train(
    tiny_config('rotnet', total_steps=2, checkpoint_every_steps=2),
    source_run,
    crops,
  )
  source = backbone_names.load_backbone(str(source_run))
  assert source.step == 2
  for given in (str(source_run), str(source_run / 'checkpoints' / '2')):
    config = tiny_config('moco', **{'model.init_from': given})
    _, state = _step0(config)
    _assert_tree_equal(_backbone_of(state), source.variables)
    # MoCo's key encoder starts as a copy of the loaded query encoder.
    _assert_tree_equal(
      {
        'params': state.extra['key_params']['backbone'],
        'batch_stats': state.extra['key_batch_stats']['backbone'],
      },
      source.variables,
    )
    assert int(state.step) == 0


def test_torchvision_resnet_path(tmp_path, monkeypatch):
  # The .pth reader has its own tests (models/torch_import_test.py); here
  # the weights it returns reach the backbone, its classifier dropped.
  module = backbones.from_config('resnet18')
  variables = jax.tree.map(
    np.asarray,
    jax.jit(module.init, static_argnames='train')(
      jax.random.key(3), jnp.zeros((1, 32, 32, 3)), train=False
    ),
  )
  variables['params']['fc'] = {'kernel': np.ones((512, 1000), np.float32)}
  read = []

  def fake_load(path, kind):
    read.append((path, kind))
    return variables

  monkeypatch.setattr(torch_import, 'load_torchvision_resnet', fake_load)
  pth = str(tmp_path / 'resnet18.pth')
  config = tiny_config(
    'rotnet',
    **{
      'model.backbone': 'resnet18',
      'model.init_from': f'imagenet_resnet18:{pth}',
    },
  )
  _, state = _step0(config)
  assert read == [(pth, 'resnet18')]
  _assert_tree_equal(_backbone_of(state), variables)


@pytest.mark.parametrize(
  'backbone,init_from,message',
  [
    (
      'resnet_tiny',
      'imagenet_efficientnet_lite0',
      'is a efficientnet_lite0, but config.model is a resnet_tiny',
    ),
    ('resnet_tiny', 'random', 'no such checkpoint folder; valid: a pre-'),
    ('resnet_tiny', '/no/such/run', "Checkpoint path '/no/such/run' does not"),
  ],
)
def test_bad_init_from_is_one_config_error(backbone, init_from, message):
  config = tiny_config(
    'simclr', **{'model.backbone': backbone, 'model.init_from': init_from}
  )
  with pytest.raises(config_check.ConfigError) as e:
    pretrain.parse(config)
  assert message in str(e.value)
  assert str(e.value).startswith('config.model.init_from=')
  assert '\n' not in str(e.value)


def test_a_source_of_another_shape_names_the_entry():
  config = tiny_config(
    'simclr',
    **{
      'model.backbone': 'efficientnet_lite0',
      'model.init_from': 'imagenet_efficientnet_lite0',
    },
  )
  settings = pretrain.parse(config)
  shapes = settings.objective.backbone_shapes(SPEC)
  variables = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes)
  variables['params']['conv_head']['kernel'] = np.zeros((1, 1, 3, 3))
  with pytest.raises(ValueError, match='conv_head/kernel has shape'):
    backbones.match_variables(variables, shapes, 'a source')
