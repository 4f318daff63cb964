"""Bad configs fail before anything runs, with a message naming key and value.

Command-line parsing errors go through `python main.py` (a fraction of a
second each: nothing heavy is imported before the flags are parsed); values
that parse but cannot run are checked in-process through `modes.run`, the
function main.py calls, with every mode replaced by one that fails the test
if it is reached; two of them also end to end through main.py.
"""

import os
import subprocess
import sys

import pytest

from configs import quickstart
from sspr_jax.core import config_check
from sspr_jax import modes

REPO = os.path.dirname(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)


def _main(workdir, *overrides, env=None):
  return subprocess.run(
    [
      sys.executable,
      'main.py',
      '--config',
      'configs/quickstart.py:moco',
      '--workdir',
      str(workdir),
      *overrides,
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    env=dict(os.environ, PYTHONPATH=REPO, **(env or {})),
  )


@pytest.mark.parametrize(
  'override,expected',
  [
    # Wrong types.
    (
      '--config.batch_size=abc',
      "--config.batch_size=abc: invalid literal for int() with base 10: 'abc'",
    ),
    (
      '--config.batch_size=1.5',
      "--config.batch_size=1.5: invalid literal for int() with base 10: '1.5'",
    ),
    (
      '--config.batch_size=[32,64]',  # A list where a scalar is expected.
      '--config.batch_size=[32,64]: invalid literal for int()',
    ),
    (
      '--config.optimizer.lr=fast',
      "--config.optimizer.lr=fast: could not convert string to float: 'fast'",
    ),
    # Unknown keys, top-level and nested, with ml-collections' suggestion.
    (
      '--config.bach_size=8',
      "Unknown config key 'bach_size' in --config.bach_size=8. "
      'Did you mean "batch_size" instead of "bach_size"?',
    ),
    (
      '--config.moco.queue_sise=8',
      "Unknown config key 'queue_sise' in --config.moco.queue_sise=8. "
      'Did you mean "queue_size" instead of "queue_sise"?',
    ),
    (
      '--config.mooc.queue_size=8',
      "Unknown config key 'mooc' in --config.mooc.queue_size=8. "
      'Did you mean "moco" instead of "mooc"?',
    ),
  ],
)
def test_command_line_type_and_key_errors_name_key_and_value(
  override, expected, tmp_path
):
  out = _main(tmp_path / 'run', override)
  assert out.returncode != 0
  assert expected in out.stderr, out.stderr
  assert 'Traceback' not in out.stderr
  assert not (tmp_path / 'run').exists()  # Nothing ran.


def test_an_unknown_key_names_only_its_override(tmp_path):
  # 'temperature' is also the last part of a valid key: that override is
  # not the culprit (the key is checked against the config file's config).
  out = _main(
    tmp_path / 'run', '--config.moco.temperature=0.1', '--config.temperature=2'
  )
  assert out.returncode != 0 and 'Traceback' not in out.stderr
  assert "Unknown config key 'temperature' in --config.temperature=2." in (
    out.stderr
  )
  assert '--config.moco.temperature=0.1' not in out.stderr


@pytest.fixture
def no_mode_runs(monkeypatch):
  """Every mode fails the test if reached: the check must come first."""

  def ran(settings, workdir):
    raise AssertionError(f'a mode ran despite the bad config: {settings}')

  for module in (
    'sspr_jax.modes.prepare_data',
    'sspr_jax.modes.pretrain',
    'sspr_jax.modes.evaluate',
  ):
    monkeypatch.setattr(f'{module}.run', ran)


@pytest.mark.parametrize(
  'overrides,expected',
  [
    (
      {'mode': 'train'},
      "Unknown config.mode 'train'; valid modes: evaluate, export, prepare_data, "
      'pretrain, recognize.',
    ),
    (
      {'mode': 'prepare_data,pretrain', 'objective': 'byol'},
      "config.objective='byol': unknown objective; valid: jigsaw, moco, rotnet, "
      'simclr.',
    ),
    (
      {'model.backbone': 'resnet99'},
      "config.model.backbone='resnet99': unknown backbone; valid: "
      'efficientnet_lite0, resnet18, resnet34, resnet50, resnet_tiny.',
    ),
    ({'batch_size': 0}, 'config.batch_size=0: must be a positive integer.'),
    ({'batch_size': -32}, 'config.batch_size=-32: must be a positive integer.'),
    (
      {'num_epochs': 0, 'total_steps': 0},
      'config.num_epochs=0 and config.total_steps=0: nothing to train',
    ),
    (
      {'optimizer.name': 'adam'},
      "config.optimizer.name='adam': unknown optimizer; valid: lars, sgd.",
    ),
    (
      {'schedule.name': 'poly'},
      "config.schedule.name='poly': unknown schedule; valid: constant, cosine, step.",
    ),
    (
      {'input.canvas_size': 0},
      'config.input.canvas_size=0: must be a positive integer.',
    ),
    (
      {'input.shorter_side': 300, 'input.canvas_size': 256},
      'config.input.shorter_side=300: larger than config.input.canvas_size',
    ),
    (
      {'input.dataset': 'imagenet'},
      "config.input.dataset='imagenet': unknown dataset",
    ),
    (
      {'moco.shuffle_bn_groups': 0},
      'config.moco.shuffle_bn_groups=0: must be a positive integer.',
    ),
    (
      {'moco.shuffle_bn_groups': 5},
      'config.moco.shuffle_bn_groups=5: must divide config.batch_size=64',
    ),
    # Name lists: the value is shown as the config holds it (list or tuple).
    (
      {'mode': 'evaluate', 'evaluate.scores': ('cosine', 'dot')},
      (
        'config.evaluate.scores=',
        "'cosine', 'dot'",
        "unknown score 'dot'; valid: "
        'cosine, euclidean, euclidean_normalized, inner_product.',
      ),
    ),
    (
      {
        'mode': 'evaluate',
        'evaluate.heads': ('linear,knn',),
      },  # As from the CLI.
      (
        'config.evaluate.heads=',
        "unknown head 'knn'; valid: linear, mlp, svc.",
      ),
    ),
    (
      {'mode': 'evaluate', 'evaluate.baselines': ('imagenet_vgg16',)},
      ('config.evaluate.baselines=', "Unknown baseline 'imagenet_vgg16'"),
    ),
    (
      {'mode': 'evaluate', 'evaluate.knn_k': 0},
      'config.evaluate.knn_k=0: must be a positive integer.',
    ),
    (
      {'mode': 'prepare_data', 'data.source': 'web'},
      "config.data.source='web': unknown data source; valid: manual, synthetic.",
    ),
  ],
)
def test_bad_values_fail_before_any_mode_runs(
  overrides, expected, tmp_path, no_mode_runs
):
  del no_mode_runs
  config = quickstart.get_config('moco')
  for key, value in overrides.items():
    section, _, name = key.rpartition('.')
    (config[section] if section else config)[name] = value
  with pytest.raises(config_check.ConfigError) as e:
    modes.run(config, str(tmp_path / 'run'))
  for part in (expected,) if isinstance(expected, str) else expected:
    assert part in str(e.value)
  assert not (tmp_path / 'run').exists()


def test_float_batch_size_from_a_config_file(no_mode_runs, tmp_path):
  del no_mode_runs
  config = quickstart.get_config('moco')
  del config['batch_size']  # An int field does not take a float.
  config.batch_size = 32.0  # e.g. `c.batch_size = 2048 / 64` in a config file
  with pytest.raises(
    config_check.ConfigError,
    match=r'config\.batch_size=32\.0: must be an integer, got float',
  ):
    modes.run(config, str(tmp_path / 'run'))


def test_every_shipped_config_passes(no_mode_runs):
  del no_mode_runs
  import importlib  # pylint: disable=g-import-not-at-top

  shipped = [(n, None) for n in ('rotnet', 'jigsaw', 'moco', 'simclr')]
  shipped += [('quickstart', 'simclr'), ('quickstart', 'moco')]
  shipped += [
    ('fashion_mnist', o) for o in ('moco', 'simclr', 'rotnet', 'jigsaw')
  ]
  for name, arg in shipped:
    module = importlib.import_module(f'configs.{name}')
    config = module.get_config(arg) if arg else module.get_config()
    config.mode = 'prepare_data,pretrain,evaluate'
    modes.parse(config)
  from configs import evaluate  # pylint: disable=g-import-not-at-top

  modes.parse(evaluate.get_config())


def test_bad_objective_from_main_is_a_plain_message_before_data(tmp_path):
  out = _main(tmp_path / 'run', '--config.objective=byol')
  assert out.returncode == 1
  assert (
    "config.objective='byol': unknown objective; valid: jigsaw, moco, "
    'rotnet, simclr.'
  ) in out.stderr
  assert 'Traceback' not in out.stderr
  assert not (tmp_path / 'run').exists()  # No data generated.


def test_batch_not_divisible_by_devices_fails_before_data(tmp_path):
  out = _main(
    tmp_path / 'run',
    '--config.batch_size=33',
    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'},
  )
  assert out.returncode == 1
  assert (
    'config.batch_size=33: not divisible by the 2 devices (jax.device_count())'
  ) in out.stderr
  assert 'use a multiple of 2' in out.stderr
  assert not (tmp_path / 'run').exists()
