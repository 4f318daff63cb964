"""Tests of benchmarks/accelerator.py: the peak/FLOP helpers, the budget
guard and the whole `--smoke` run (tiny sizes, CPU) in a child process."""

import importlib.util
import json
import math
import os
import subprocess
import sys

_PATH = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), 'accelerator.py'
)
_spec = importlib.util.spec_from_file_location('accelerator_bench', _PATH)
acc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(acc)


def test_peak_tflops_from_device_kind():
  assert acc.peak_tflops('NVIDIA H200') == 989
  assert acc.peak_tflops('NVIDIA H100 80GB HBM3') == 989
  assert acc.peak_tflops('NVIDIA H100 PCIe') == 756
  assert acc.peak_tflops('NVIDIA A100-SXM4-80GB') == 312
  assert acc.peak_tflops('NVIDIA L4') == 121
  assert acc.peak_tflops('NVIDIA L40S') == 362
  assert acc.peak_tflops('TPU v5 lite') == 197
  assert acc.peak_tflops('TPU v5p') == 459
  assert acc.peak_tflops('TPU v6 lite') == 918
  assert acc.peak_tflops('cpu') is None
  assert acc.peak_tflops('cpu', 2.5) == 2.5


def test_cost_flops_dict_or_list():
  assert acc.cost_flops({'flops': 3.0, 'bytes accessed': 9.0}) == 3.0
  assert acc.cost_flops([{'flops': 2.0}, {'flops': 5.0}]) == 7.0
  assert math.isnan(acc.cost_flops(None))
  assert math.isnan(acc.cost_flops([]))


def test_budget_spent_skips_every_section():
  rows = acc.main(['--smoke', '--budget_s', '0', '--only', 'gallery,train'])
  assert [(r['section'], r['result']) for r in rows] == [
    ('gallery', 'skipped'),
    ('train', 'skipped'),
  ]


def test_smoke_run(tmp_path):
  """The documented command in a child process, which owns its XLA flags
  (optimisation level 0: the smoke run is mostly compiles)."""
  out = tmp_path / 'rows.json'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['XLA_FLAGS'] = (
    env.get('XLA_FLAGS', '') + ' --xla_backend_optimization_level=0'
  ).strip()
  run = subprocess.run(
    [sys.executable, _PATH, '--smoke', '--json', str(out)],
    cwd=os.path.dirname(os.path.dirname(_PATH)),
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
  rows = json.loads(out.read_text())['rows']
  by_section = {}
  for r in rows:
    by_section.setdefault(r['section'], []).append(r)
  assert list(by_section) == ['gallery', 'cv', 'train', 'input']

  train = by_section['train']
  assert [r['objective'] for r in train if r['kind'] == 'thesis'] == list(
    acc.OBJECTIVES
  )
  for r in train:
    assert r['images_per_s'] > 0, r
    assert math.isfinite(r['flops_per_step']) and r['flops_per_step'] > 0, r
    assert r['mfu'] is None  # CPU: no peak known
    assert math.isfinite(r['loss']), r
  # The search ran for RotNet up to the smoke cap (batch 8 -> 16).
  largest = [r for r in train if r['kind'] == 'largest']
  assert [(r['objective'], r['batch']) for r in largest] == [('rotnet', 16)]
  thesis_rotnet = next(r for r in train if r['objective'] == 'rotnet')
  assert largest[0]['flops_per_step'] > 1.5 * thesis_rotnet['flops_per_step']

  gallery = by_section['gallery']
  assert {r['chunk'] for r in gallery} == {256, 64}
  for r in gallery:
    assert r['n'] == 500 and r['measured'] and r['queries_run'] == 500
    assert 0 < r['map'] < 1 and r['seconds'] > 0
    assert r['sklearn_s'] > 0 and r['sklearn_queries'] == 20
    assert r['max_abs_ap_diff'] < 1e-4
  assert gallery[0]['map'] == gallery[1]['map']

  (cv,) = by_section['cv']
  assert cv['seconds'] > 0 and cv['sklearn_s'] > 0
  assert cv['sklearn_fits_timed'] == 2 and 0 <= cv['test_accuracy'] <= 1

  (inp,) = by_section['input']
  assert inp['images_per_s'] > 0 and inp['cpu_ms_per_image'] >= 0
  assert sorted(inp['demand']) == sorted(acc.OBJECTIVES)
  assert inp['input_bound'] == sorted(
    o for o, d in inp['demand'].items() if d > inp['images_per_s']
  )

  table = [line for line in run.stdout.splitlines() if line.startswith('| ')]
  assert len(table) == 1 + len(rows)
  assert 'Goals (issue #11' in run.stdout
