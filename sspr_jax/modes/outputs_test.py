"""The 'Wrote:' block at the end of each mode names what it wrote, where."""

import os
import types

from sspr_jax import modes
from sspr_jax.core import results
from sspr_jax.testing import evaluation_config
from sspr_jax.modes import outputs
from sspr_jax.modes import prepare_data
from sspr_jax.modes import pretrain


def test_wrote_aligns_absolute_paths_with_notes(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  text = outputs.wrote([('a.json', 'a.json'), ('dir/', 'd', 'note')])
  assert text.splitlines() == [
    'Wrote:',
    f'  a.json  {tmp_path}/a.json',
    f'  dir/    {tmp_path}/d  (note)',
  ]


def test_prepare_data_prints_the_summary_and_dataset_paths(
  tiny_raw_data, tiny_datasets, tmp_path, capsys
):
  config = evaluation_config(tiny_raw_data, tiny_datasets)
  settings = prepare_data.parse(config)
  prepare_data.run(settings, str(tmp_path))
  wrote = capsys.readouterr().out.partition('Wrote:')[2]
  assert f'data_summary.json  {tmp_path}/data_summary.json' in wrote
  for name in ('sku110k_crops', 'rack_crops'):
    line = next(x for x in wrote.splitlines() if x.split()[:1] == [name])
    path = line.split()[1]
    assert path.startswith(f'{tiny_datasets}/{name}/') and os.path.isdir(path)


def test_pretrain_prints_checkpoints_metrics_and_tensorboard(
  tiny_raw_data, tiny_datasets, tmp_path, capsys, monkeypatch
):
  def train(config, workdir, **kwargs):  # What a run leaves, without one.
    del config, kwargs
    for step in ('4', '12', '12.orbax-checkpoint-tmp-0'):
      os.makedirs(os.path.join(workdir, 'checkpoints', step))
    return types.SimpleNamespace(step=12)  # Stopped (SIGTERM) before 24.

  monkeypatch.setattr(pretrain.trainer, 'train', train)
  config = evaluation_config(tiny_raw_data, tiny_datasets)
  config.mode = 'pretrain'
  ((_, settings),) = modes.parse(config)
  assert pretrain.run(settings, str(tmp_path)).step == 12
  assert not results.is_complete(str(tmp_path), 'pretrain')  # 12 of 24.
  wrote = capsys.readouterr().out.partition('Wrote:')[2].splitlines()
  assert wrote[1:] == [
    f'  checkpoints/   {tmp_path}/checkpoints  (latest step 12)',
    f'  metrics.jsonl  {tmp_path}/metrics.jsonl',
    f'  tensorboard/   {tmp_path}/tensorboard',
  ]
  assert pretrain.written(str(tmp_path / 'none'))[0][2] == 'none saved'
