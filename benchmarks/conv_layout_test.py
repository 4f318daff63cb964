"""The layout benchmark's two networks compute the same function."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import conv_layout  # noqa: E402  pylint: disable=g-import-not-at-top


def test_layouts_give_the_same_loss_and_gradients():
  r = conv_layout.run_case('resnet_tiny', 32, 4, 1)
  assert np.isclose(r['loss']['NHWC'], r['loss']['NCHW'], rtol=1e-4)
  assert r['grad_rel_diff'] < 1e-3
  assert r['nhwc_s'] > 0 and r['nchw_s'] > 0


def test_bottleneck_has_downsample_convs_and_runs():
  specs = conv_layout._conv_specs('resnet50')
  assert len(specs) == 1 + 16 * 3 + 4  # stem, 16 blocks, 4 downsamples
  out = conv_layout.main(['--cases', 'resnet_tiny:16:2:1'])
  rows = [line for line in out.splitlines() if line.startswith('| resnet_tiny')]
  assert len(rows) == 1
