"""Trainer tests on tiny models: learning, resume, sharding, config errors."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from sspr_jax.objectives import build_objective
from sspr_jax.core import checkpoint as checkpoint_lib
from sspr_jax.core import metrics as metrics_lib
from sspr_jax.train import trainer

from sspr_jax.testing import REPO, child_env, tiny_config, tiny_crops
from sspr_jax.testing import train_tiny as _train
from sspr_jax.testing import TinyLoader as _Loader


@pytest.fixture(scope='module')
def crops(tiny_datasets):
  return tiny_crops(tiny_datasets)


# Contrastive losses are noisy at batch 16 and MoCo's first rises while its
# queue fills with real keys: they get more steps, gentler views and (MoCo) a
# slow key encoder and a short queue, so that the fall shows in 40 steps.
_GENTLE = {'crop_scale': (0.5, 1.0), 'color_strength': 0.2, 'blur_p': 0.0}


@pytest.mark.parametrize(
  'objective,overrides',
  [
    ('rotnet', {}),
    ('jigsaw', {}),
    (
      'simclr',
      {
        'total_steps': 40,
        'log_every_steps': 2,
        'optimizer.lr': 0.2,
        **{f'simclr.{k}': v for k, v in _GENTLE.items()},
      },
    ),
    (
      'moco',
      {
        'total_steps': 40,
        'log_every_steps': 2,
        'moco.queue_size': 32,
        'moco.momentum': 0.99,
        **{f'moco.{k}': v for k, v in _GENTLE.items()},
      },
    ),
  ],
)
def test_loss_falls_on_embedded_data(objective, overrides, crops, tmp_path):
  config = tiny_config(objective, **overrides)
  state = _train(config, tmp_path, crops)
  losses = [m['loss'] for m in metrics_lib.read_metrics(str(tmp_path))]
  assert len(losses) == config.total_steps // config.log_every_steps
  assert np.all(np.isfinite(losses))
  k = max(1, len(losses) // 4)  # Mean of the first and last quarter.
  assert np.mean(losses[-max(2, k) :]) < np.mean(losses[:k]) - 0.1, losses
  assert int(state.step) == config.total_steps
  assert os.path.isdir(tmp_path / 'checkpoints' / str(config.total_steps))
  # TensorBoard: the same losses under train/, the settings in HParams.
  events = metrics_lib.read_events(str(tmp_path / 'tensorboard'))
  tb_losses = [
    v.simple_value
    for e in events
    for v in e.summary.value
    if v.tag == 'train/loss'
  ]
  np.testing.assert_allclose(tb_losses, losses, rtol=1e-6)
  assert any(
    v.metadata.plugin_data.plugin_name == 'hparams'
    for e in events
    for v in e.summary.value
  )


RESUME_CONFIG = dict(total_steps=6, checkpoint_every_steps=2)


@pytest.fixture(scope='module')
def uninterrupted(crops, tmp_path_factory):
  config = tiny_config('moco', **RESUME_CONFIG)
  return _train(config, tmp_path_factory.mktemp('straight'), crops)


@pytest.mark.parametrize('corrupt_latest', [False, True])
def test_resumed_run_equals_uninterrupted_run(
  corrupt_latest, crops, uninterrupted, tmp_path, caplog
):
  config = tiny_config('moco', **RESUME_CONFIG)
  with pytest.raises(KeyboardInterrupt):
    _train(config, tmp_path, crops, loader=_Loader(crops, config, stop_after=5))
  checkpoints = tmp_path / 'checkpoints'
  assert sorted(os.listdir(checkpoints)) == ['2', '4']
  if corrupt_latest:  # E.g. the machine died while step 4 was being written.
    for f in (checkpoints / '4' / 'state').rglob('*'):
      if f.is_file() and f.stat().st_size > 100:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
  resumed = _train(config, tmp_path, crops)
  if corrupt_latest:
    assert (
      'Checkpoint step 4' in caplog.text and 'does not restore' in caplog.text
    )
    assert (checkpoints / '4.corrupt').is_dir()  # Kept aside, not deleted.
  for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed)):
    np.testing.assert_allclose(
      np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6
    )


# Above every metadata file of the tiny model's checkpoint (the largest,
# _METADATA, is ~65 KB) and below its largest array (147 KB): every array data
# file of OCDBT fails, however TensorStore happens to group the arrays into
# files (that grouping varies from write to write).
FILE_SIZE_LIMIT = 100 * 1024


class _FullDiskAt:
  """`loader`, but once checkpoint `step` is complete no file may grow past
  FILE_SIZE_LIMIT (RLIMIT_FSIZE): the next checkpoint write fails with a real
  OS error, as on a full disk."""

  def __init__(self, loader, checkpoints, step):
    self._loader, self._checkpoints, self._step = loader, checkpoints, step

  def batch_spec(self, global_batch):
    return self._loader.batch_spec(global_batch)

  def iter_from(self, start):
    import resource  # pylint: disable=g-import-not-at-top
    import time  # pylint: disable=g-import-not-at-top

    step, checkpoints = self._step, self._checkpoints
    for i, batch in enumerate(self._loader.iter_from(start)):
      if start + i == step:
        deadline = time.time() + 120
        while not (checkpoints / str(step)).is_dir():  # Written asynchronously.
          assert time.time() < deadline, 'checkpoint was never written'
          time.sleep(0.05)
        metadata = [
          f.stat().st_size
          for f in (checkpoints / str(step)).rglob('*')
          if f.is_file() and f.parent.name != 'd'
        ]
        assert (
          max(metadata) < FILE_SIZE_LIMIT
        )  # Metadata and metrics still fit.
        resource.setrlimit(
          resource.RLIMIT_FSIZE,
          (FILE_SIZE_LIMIT, resource.getrlimit(resource.RLIMIT_FSIZE)[1]),
        )
      yield batch


@pytest.mark.isolated  # Process-wide file size limit; see conftest.
def test_failed_checkpoint_write_stops_with_clear_error_and_rerun_resumes(
  crops, uninterrupted, tmp_path, caplog
):
  resource = pytest.importorskip('resource')
  config = tiny_config('moco', **RESUME_CONFIG)  # Saves steps 2, 4 and 6.
  assert max(np.asarray(x).nbytes for x in jax.tree.leaves(uninterrupted)) > (
    FILE_SIZE_LIMIT
  )  # So every checkpoint write after step 2 fails.
  checkpoints = tmp_path / 'checkpoints'
  limits = resource.getrlimit(resource.RLIMIT_FSIZE)
  try:
    with pytest.raises(checkpoint_lib.CheckpointWriteError) as e:
      _train(
        config,
        tmp_path,
        crops,
        loader=_FullDiskAt(_Loader(crops, config), checkpoints, 2),
      )
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, limits)
  # Step 4 was written in the background; its failure surfaced at step 6's save.
  message = str(e.value)
  assert f'Writing checkpoint step 4 to {checkpoints} failed' in message
  assert 'File too large' in message  # The OS error (EFBIG), spelt out.
  assert 'latest good: step 2' in message and 'Free disk space' in message
  assert sorted(s for s in os.listdir(checkpoints) if s.isdigit()) == ['2']
  # The fault removed, the same run resumes from step 2 and ends as an
  # uninterrupted run; the failed write's leftover is gone.
  caplog.set_level('INFO')
  resumed = _train(config, tmp_path, crops)
  assert f'Resumed from {checkpoints} at step 2.' in caplog.text
  assert sorted(os.listdir(checkpoints)) == ['2', '4', '6']
  for a, b in zip(jax.tree.leaves(uninterrupted), jax.tree.leaves(resumed)):
    np.testing.assert_allclose(
      np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6
    )


def test_two_devices_match_one_device():
  """Loss, parameters, BN statistics and MoCo's queue equal for 1 and 2 devices."""
  script = textwrap.dedent("""
    import jax, numpy as np, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from sspr_jax.objectives import build_objective
    from sspr_jax.train import optim, trainer
    from sspr_jax.testing import tiny_config
    assert jax.device_count() == 2
    rng = np.random.default_rng(0)
    batch = {'image': rng.integers(0, 255, (16, 40, 40, 3), np.uint8),
             'size': rng.integers(20, 41, (16, 2)).astype(np.int32)}
    for name in ('moco', 'simclr'):
      config = tiny_config(name, batch_size=16)  # MoCo: 2 BN groups of 8.
      objective = build_objective(config)
      schedule = optax.constant_schedule(0.05)
      tx = optim.optimizer(config, schedule)
      results = []
      for devices in (jax.devices()[:1], jax.devices()):
        mesh = Mesh(np.array(devices), ('data',))
        rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
        x = jax.device_put(batch, data)
        spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), batch)
        params, bs, extra = jax.jit(lambda k: objective.init(k, spec),
                                    out_shardings=rep)(jax.random.key(0))
        state = trainer.TrainState(
            step=np.int32(0), params=params, batch_stats=bs,
            opt_state=tx.init(params), extra=extra, nonfinite_step=np.int32(-1))
        state = jax.device_put(state, rep)
        step = jax.jit(trainer.make_train_step(objective, tx, schedule,
                                               jax.random.key(1)),
                       in_shardings=(rep, data), out_shardings=(rep, rep))
        states, losses = [], []
        for _ in range(2):
          state, metrics = step(state, x)
          states.append(jax.device_get(state))
          losses.append(float(metrics['loss']))
        results.append((states, losses))
      (s1, l1), (s2, l2) = results
      # The second step's loss is a function of the first step's state: both
      # agree. The states themselves are compared after one step only: the
      # tiny net's BatchNorm over near-constant channels (4 values a channel
      # in its last stage) amplifies another reduction order's rounding
      # (~1e-5 in the gradients) chaotically after that.
      np.testing.assert_allclose(l1, l2, rtol=1e-5)
      for a, b in zip(*map(jax.tree.leaves, (s1[0], s2[0]))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)
      print(name, 'ok', l1[-1])
  """)
  env = child_env(XLA_FLAGS='--xla_force_host_platform_device_count=2')
  out = subprocess.run(
    [sys.executable, '-c', script],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'moco ok' in out.stdout and 'simclr ok' in out.stdout


def test_unknown_objective_and_missing_settings_are_clear_errors():
  config = tiny_config('moco')
  config.objective = 'byol'
  with pytest.raises(ValueError, match='jigsaw, moco, rotnet, simclr'):
    build_objective(config)
  config = tiny_config('moco')
  del config['moco']
  with pytest.raises(ValueError, match='no `moco` section'):
    build_objective(config)


def test_bad_config_key_on_command_line_names_it(tmp_path):
  out = subprocess.run(
    [
      sys.executable,
      'main.py',
      '--config',
      'configs/quickstart.py:moco',
      '--workdir',
      str(tmp_path),
      '--config.moco.no_such_key=1',
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode != 0
  assert (
    "Unknown config key 'no_such_key' in --config.moco.no_such_key=1"
    in out.stderr
  )


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(crops, tmp_path):
  # A huge learning rate blows the parameters up after the first update, so
  # a later step's loss or gradients are NaN/Inf.
  config = tiny_config(
    'rotnet',
    total_steps=8,
    log_every_steps=1,
    checkpoint_every_steps=1,
    **{'optimizer.lr': 1e30},
  )
  with pytest.raises(
    trainer.NonFiniteError, match=r'NaN/Inf at step (\d+)'
  ) as e:
    _train(config, tmp_path, crops)
  bad_step = int(
    __import__('re').search(r'at step (\d+)', str(e.value)).group(1)
  )
  saved = sorted(
    int(s) for s in os.listdir(tmp_path / 'checkpoints') if s.isdigit()
  )
  assert saved and max(saved) <= bad_step  # Nothing after the bad step.
  assert str(max(saved)) in str(e.value)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  import signal
  import time

  workdir = tmp_path / 'run'
  cmd = [
    sys.executable,
    'main.py',
    '--config',
    'configs/quickstart.py:moco',
    '--workdir',
    str(workdir),
    '--config.mode=pretrain',
    '--config.total_steps=100000',
    '--config.log_every_steps=1',
    '--config.checkpoint_every_steps=100000',
    '--config.data.shelf_photos.train=2',
    '--config.data.shelf_photos.val=1',
    '--config.data.shelf_photos.test=1',
    '--config.data.rack_photos=3',
    '--config.data.num_classes=4',
    '--config.input.canvas_size=40',
    '--config.moco.view_size=32',
    '--config.moco.queue_size=64',
    '--config.batch_size=16',
  ]
  proc = subprocess.Popen(
    cmd,
    cwd=REPO,
    env=child_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  metrics = workdir / 'metrics.jsonl'
  deadline = time.time() + 400
  while time.time() < deadline and proc.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
      break
    time.sleep(0.5)
  assert proc.poll() is None, proc.communicate()[1][-3000:]
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err[-3000:]
  assert 'SIGTERM' in err
  steps = [int(s) for s in os.listdir(workdir / 'checkpoints') if s.isdigit()]
  logged = len(metrics.read_text().splitlines())
  assert steps and max(steps) >= logged  # Saved at the step it stopped.


def test_bfloat16_compute_keeps_float32_parameters(crops, tmp_path):
  config = tiny_config(
    'simclr', total_steps=2, log_every_steps=1, **{'model.dtype': 'bfloat16'}
  )
  state = _train(config, tmp_path, crops)
  losses = [m['loss'] for m in metrics_lib.read_metrics(str(tmp_path))]
  assert np.all(np.isfinite(losses))
  dtypes = {x.dtype for x in jax.tree.leaves(state.params)}
  assert dtypes == {np.dtype('float32')}
  # The forward pass really runs in bf16.
  objective = build_objective(config)
  views = objective.views(
    jax.random.key(0), {'image': np.zeros((2, 40, 40, 3), np.uint8)}
  )
  out = objective.network.apply(
    {'params': state.params, 'batch_stats': state.batch_stats},
    views['images'],
    train=False,
  )
  assert out[0].dtype == jax.numpy.bfloat16
