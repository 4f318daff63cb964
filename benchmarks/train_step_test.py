"""Smoke test of benchmarks/train_step.py's JAX side (torch not needed)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_step  # noqa: E402  pylint: disable=g-import-not-at-top


def test_variant_settings():
  assert set(train_step.VARIANTS) >= {'before', 'after', 'fast_math', 'bf16'}
  for pool, small, dtype, options in train_step.VARIANT_SETTINGS.values():
    assert isinstance(pool, bool) and isinstance(small, bool)
    assert dtype in ('float32', 'bfloat16')
    assert all(isinstance(v, (bool, str)) for v in options.values())
  args = train_step.parse_args(['--variants', 'after,bf16', '--cases', 'a:1:2'])
  assert args.variants == ['after', 'bf16']
  assert args.cases == [('a', 1, 2)]
  # Both sides feed RotNet the rotations its config sets: the thesis's one.
  assert train_step.rotations_per_image() == 1
  assert train_step.views_per_step('rotnet', 32) == 32
  assert train_step.views_per_step('jigsaw', 32) == 9 * 32


def test_smoke_after_and_bf16_fast_math():
  # One compile per variant (~20 s each on 2 cores): the bf16 + fast-math
  # variant checks both the model dtype and the per-compile XLA options.
  out = train_step.main(
    [
      '--cases',
      'resnet_tiny:32:1',
      '--objectives',
      'rotnet',
      '--variants',
      'after,bf16_fast_math',
      '--warmup',
      '0',
      '--batch_size',
      '4',
      '--no_torch',
    ]
  )
  rows = [line for line in out.splitlines() if line.startswith('| rotnet')]
  assert len(rows) == 2
  losses = [float(r.split('|')[-3]) for r in rows]
  # Same init and batch: bf16 compute changes the first loss only a little.
  assert abs(losses[0] - losses[1]) < 0.05 * abs(losses[0])
