"""MetricsWriter: metrics.jsonl keys, TensorBoard tags and the HParams tab."""

import json

from sspr_jax.core import metrics as metrics_lib


def test_train_tags_are_prefixed_in_tensorboard_only(tmp_path):
  writer = metrics_lib.MetricsWriter(str(tmp_path))
  writer.write(
    3, {'loss': 1.5, 'eval/full_map/cosine': 40.0}, tensorboard_prefix='train/'
  )
  writer.close()
  record = json.loads((tmp_path / 'metrics.jsonl').read_text())
  assert record['step'] == 3
  assert record['loss'] == 1.5 and record['eval/full_map/cosine'] == 40.0
  tags = {
    value.tag: value.simple_value
    for event in metrics_lib.read_events(tmp_path / 'tensorboard')
    for value in event.summary.value
  }
  assert tags == {'train/loss': 1.5, 'eval/full_map/cosine': 40.0}


def test_hparams_hold_the_flattened_config_in_the_runs_own_files(tmp_path):
  writer = metrics_lib.MetricsWriter(str(tmp_path))
  config = {
    'batch_size': 64,
    'optimizer': {'lr': 0.3, 'name': 'lars'},
    'evaluate': {'baselines': ('random', 'pixels'), 'heads': None},
    'model': {'zero_init_residual': True},
  }
  writer.hparams(config, ['train/loss', 'eval/full_map/cosine'])
  writer.close()
  from tensorboardX.proto import plugin_hparams_pb2  # pylint: disable=g-import-not-at-top

  # No sub-run: the settings sit beside the run's scalars.
  assert [p.name for p in (tmp_path / 'tensorboard').iterdir()] == [
    p.name for p in (tmp_path / 'tensorboard').glob('events.out.tfevents.*')
  ]
  plugin_values = [
    value
    for event in metrics_lib.read_events(tmp_path / 'tensorboard')
    for value in event.summary.value
    if value.metadata.plugin_data.plugin_name == 'hparams'
  ]
  assert len(plugin_values) == 3  # experiment, session start, session end
  datas = [
    plugin_hparams_pb2.HParamsPluginData.FromString(
      v.metadata.plugin_data.content
    )
    for v in plugin_values
  ]
  experiment = next(d.experiment for d in datas if d.HasField('experiment'))
  assert [m.name.tag for m in experiment.metric_infos] == [
    'train/loss',
    'eval/full_map/cosine',
  ]
  start = next(
    d.session_start_info for d in datas if d.HasField('session_start_info')
  )
  hparams = start.hparams
  assert hparams['batch_size'].number_value == 64
  assert hparams['optimizer.lr'].number_value == 0.3
  assert hparams['optimizer.name'].string_value == 'lars'
  assert hparams['model.zero_init_residual'].bool_value is True
  assert hparams['evaluate.baselines'].string_value == "('random', 'pixels')"
  assert hparams['evaluate.heads'].string_value == 'None'


def test_a_disabled_writer_writes_nothing(tmp_path):
  writer = metrics_lib.MetricsWriter(str(tmp_path / 'w'), enabled=False)
  writer.write(1, {'loss': 1.0})
  writer.hparams({'a': 1}, ['train/loss'])
  writer.close()
  assert not (tmp_path / 'w').exists()


def test_a_resumed_writer_drops_the_steps_it_will_redo(tmp_path):
  # A run killed at step 6 after its checkpoint at step 4: steps 5-6 and a
  # line cut by the kill are logged again after the resume, once each.
  writer = metrics_lib.MetricsWriter(str(tmp_path))
  for step in range(1, 7):
    writer.write(step, {'loss': float(step)})
  writer.close()
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 7, "lo')
  writer = metrics_lib.MetricsWriter(str(tmp_path), resume_step=4)
  for step in (5, 6):
    writer.write(step, {'loss': 10.0 + step})
  writer.close()
  records = metrics_lib.read_metrics(str(tmp_path))
  assert [r['step'] for r in records] == [1, 2, 3, 4, 5, 6]
  assert [r['loss'] for r in records[4:]] == [15.0, 16.0]


def test_read_metrics_names_a_bad_line_inside_the_file(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text(
    '{"step": 1}\nnot json\n{"step": 2}\n'
  )
  try:
    metrics_lib.read_metrics(str(tmp_path))
  except ValueError as e:
    assert 'metrics.jsonl, line 2' in str(e)
  else:
    raise AssertionError('no error')
