"""Smoke test of benchmarks/depthwise.py: both implementations agree on
every Lite0 depthwise layer shape (at a small input) and a row each."""

import importlib.util
import os

_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'depthwise.py')
_spec = importlib.util.spec_from_file_location('depthwise_bench', _PATH)
depthwise = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(depthwise)


def test_every_layer_shape_is_timed_and_agrees(capsys):
  shapes = depthwise.layer_shapes(32)
  assert shapes[0] == (16, 32, 3, 1) and len(shapes) == 12
  rows = depthwise.main(
    ['--batch', '2', '--size', '32', '--embed', '0', '--repeats', '1']
  )
  assert len(rows) == len(shapes)
  assert all(old > 0 and new > 0 for old, new in rows)
  assert capsys.readouterr().out.count('x |') == len(shapes)
