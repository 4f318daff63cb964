"""Depthwise convolution on XLA:CPU: the grouped convolution against the
shifted-slice sum of `efficientnet.depthwise_conv`, side by side.

  python benchmarks/depthwise.py [--batch 32] [--repeats 3] [--embed 128]

Rows: each distinct depthwise layer shape of EfficientNet-Lite0 at 224 px
(forward, float32), then the whole frozen EfficientNet-Lite0 embedding
(`backbone_names.imagenet_backbone`, images/s) with either implementation.
The two run alternately and the best of `--repeats` is kept, so a busy
machine slows both alike. Prints one table of seconds and ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)
import sspr_jax  # noqa: E402,F401  # pylint: disable=g-import-not-at-top,unused-import
import jax  # noqa: E402  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # noqa: E402  # pylint: disable=g-import-not-at-top

from sspr_jax.models import efficientnet  # noqa: E402  # pylint: disable=g-import-not-at-top


def grouped_conv(x, kernel, stride):
  """The XLA grouped convolution that `depthwise_conv` replaces."""
  return jax.lax.conv_general_dilated(
    x,
    kernel,
    (stride, stride),
    'SAME',
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    feature_group_count=x.shape[-1],
  )


def layer_shapes(size: int = 224):
  """(H, C, k, stride) of each distinct depthwise layer of Lite0."""
  shapes, h = [], size // 2
  for stage in efficientnet.LITE0_STAGES:
    for r in range(stage.num_repeat):
      channels = (
        stage.input_filters if r == 0 else stage.output_filters
      ) * stage.expand_ratio
      stride = stage.stride if r == 0 else 1
      row = (h, channels, stage.kernel_size, stride)
      if row not in shapes:
        shapes.append(row)
      h = -(-h // stride)
  return shapes


def best_of(fns, args, repeats):
  """Best seconds of each fn, calls alternated."""
  for fn in fns:
    jax.block_until_ready(fn(*args))  # Compile.
  best = [float('inf')] * len(fns)
  for _ in range(repeats):
    for i, fn in enumerate(fns):
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      best[i] = min(best[i], time.perf_counter() - start)
  return best


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--embed', type=int, default=128, help='Images (0: skip).')
  p.add_argument('--size', type=int, default=224)
  args = p.parse_args(argv)
  rng = np.random.default_rng(0)
  print(
    f'jax {jax.__version__}, {os.cpu_count()} CPUs, batch {args.batch}, '
    f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}'
  )
  print('| layer (H, C, k, stride) | grouped conv s | shifted sum s | ratio |')
  print('|---|---|---|---|')
  rows = []
  for h, c, k, stride in layer_shapes(args.size):
    x = jnp.asarray(rng.normal(size=(args.batch, h, h, c)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, 1, c)), jnp.float32)
    fns = [
      jax.jit(grouped_conv, static_argnums=2),
      jax.jit(efficientnet.depthwise_conv, static_argnums=2),
    ]
    a, b = (fn(x, w, stride) for fn in fns)
    err = float(jnp.max(jnp.abs(a - b)))
    if err > 1e-3:
      raise AssertionError(f'implementations differ by {err}')
    old, new = best_of(fns, (x, w, stride), args.repeats)
    rows.append((old, new))
    print(
      f'| {h}, {c}, {k}, {stride} | {old:.4f} | {new:.4f} | {old / new:.1f}x |'
    )
  if args.embed:
    from sspr_jax.evaluate import backbone_names  # pylint: disable=g-import-not-at-top

    backbone = backbone_names.imagenet_backbone('efficientnet_lite0')
    images = rng.integers(
      0, 256, (args.embed, args.size, args.size, 3), np.uint8
    )

    def run(fn):
      def go(variables, all_images):
        outs = [
          fn(variables, all_images[i : i + args.batch])
          for i in range(0, len(all_images), args.batch)
        ]
        return outs

      return go

    # Each jitted embedding is traced (and compiled) while the module-level
    # function is the one it measures; later calls reuse that program.
    saved = efficientnet.depthwise_conv
    try:
      efficientnet.depthwise_conv = grouped_conv
      old_fn = run(
        jax.jit(lambda v, b: backbone.module.apply(v, backbone.normalize(b)))
      )
      jax.block_until_ready(old_fn(backbone.variables, images[: args.batch]))
    finally:
      efficientnet.depthwise_conv = saved
    new_fn = run(
      jax.jit(lambda v, b: backbone.module.apply(v, backbone.normalize(b)))
    )
    old, new = best_of(
      [old_fn, new_fn], (backbone.variables, images), max(1, args.repeats - 1)
    )
    print(
      f'| EfficientNet-Lite0 embedding, {args.embed} images at {args.size} px '
      f'| {args.embed / old:.1f} img/s | {args.embed / new:.1f} img/s | '
      f'{old / new:.1f}x |'
    )
  return rows


if __name__ == '__main__':
  main()
