"""ResNet backbone forward+backward in NHWC against NCHW on XLA:CPU, side by side.

  python benchmarks/conv_layout.py [--cases resnet18:96:64:5,resnet50:224:32:2]

The question it answers: would NCHW activations end to end (torch's layout)
make the CPU train step faster? The model (`sspr_jax.models.resnet`) is NHWC
through Flax; rewriting it and every objective's views is only worth it if
the same network is clearly faster in NCHW. So this builds one torchvision
ResNet trunk in plain `lax` (convolutions, train-mode BatchNorm, ReLU,
max-pool, residuals, global pool) whose layout is a parameter, with the
same weights in both layouts (HWIO kernels for NHWC, OIHW for NCHW), and
times `jax.jit(jax.value_and_grad(loss))` of each, alternating the two step
by step so load from other processes hits both alike. It prints per case
the medians, the NCHW/NHWC speed ratio and the relative L2 difference
between the two layouts' gradients (the same function: float32 rounding,
which train-mode BatchNorm amplifies a little).

Each case is BACKBONE:SIZE:BATCH:STEPS. Both layouts use the same max-pool
(`lax.reduce_window`, JAX's own gradient) and plain convolutions (no
small-map matmuls), so only the layout differs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

# (block, stage sizes, base width): torchvision's.
ARCHS = {
  'resnet_tiny': ('basic', (1, 1, 1, 1), 8),
  'resnet18': ('basic', (2, 2, 2, 2), 64),
  'resnet50': ('bottleneck', (3, 4, 6, 3), 64),
}
LAYOUTS = ('NHWC', 'NCHW')


def _conv_specs(arch: str):
  """[(name, kh, kw, cin, cout, stride, pad)] in forward order."""
  block, stages, width = ARCHS[arch]
  specs = [('conv1', 7, 7, 3, width, 2, 3)]
  cin = width
  for i, n in enumerate(stages):
    feat = width * 2**i
    for j in range(n):
      s = 2 if i > 0 and j == 0 else 1
      p = f'l{i}_{j}_'
      if block == 'basic':
        cout = feat
        specs += [
          (p + 'a', 3, 3, cin, feat, s, 1),
          (p + 'b', 3, 3, feat, feat, 1, 1),
        ]
      else:
        cout = feat * 4
        specs += [
          (p + 'a', 1, 1, cin, feat, 1, 0),
          (p + 'b', 3, 3, feat, feat, s, 1),
          (p + 'c', 1, 1, feat, cout, 1, 0),
        ]
      if s != 1 or cin != cout:
        specs.append((p + 'down', 1, 1, cin, cout, s, 0))
      cin = cout
  return specs


def init_params(arch: str, seed: int = 0):
  """HWIO kernels and BN scale/bias, float32, He init."""
  rng = np.random.default_rng(seed)
  params = {}
  for name, kh, kw, cin, cout, *_ in _conv_specs(arch):
    std = np.sqrt(2.0 / (kh * kw * cout))
    params[name] = {
      'kernel': rng.normal(0, std, (kh, kw, cin, cout)).astype(np.float32),
      'scale': np.ones(cout, np.float32),
      'bias': np.zeros(cout, np.float32),
    }
  return params


def to_layout(params, layout: str):
  """The same weights with kernels in the layout's order (OIHW for NCHW)."""
  if layout == 'NHWC':
    return params
  return {
    k: {**v, 'kernel': np.ascontiguousarray(v['kernel'].transpose(3, 2, 0, 1))}
    for k, v in params.items()
  }


def forward(params, x, arch: str, layout: str):
  """Pooled features [B, C] of images x in `layout` (train-mode BN)."""
  nchw = layout == 'NCHW'
  caxis = 1 if nchw else 3
  spatial = (2, 3) if nchw else (1, 2)
  dims = ('NCHW', 'OIHW', 'NCHW') if nchw else ('NHWC', 'HWIO', 'NHWC')
  specs = {s[0]: s for s in _conv_specs(arch)}

  def conv_bn(name, h, relu=True):
    _, _, _, _, _, stride, pad = specs[name]
    p = params[name]
    y = lax.conv_general_dilated(
      h,
      p['kernel'],
      (stride, stride),
      ((pad, pad), (pad, pad)),
      dimension_numbers=dims,
    )
    axes = (0,) + spatial
    mean = jnp.mean(y, axes, keepdims=True)
    var = jnp.mean(jnp.square(y - mean), axes, keepdims=True)
    shape = [1, 1, 1, 1]
    shape[caxis] = -1
    y = (y - mean) * lax.rsqrt(var + 1e-5)
    y = y * p['scale'].reshape(shape) + p['bias'].reshape(shape)
    return jax.nn.relu(y) if relu else y

  h = conv_bn('conv1', x)
  window = [1, 1, 1, 1]
  strides = [1, 1, 1, 1]
  pads = [(0, 0)] * 4
  for a in spatial:
    window[a], strides[a], pads[a] = 3, 2, (1, 1)
  h = lax.reduce_window(h, -jnp.inf, lax.max, window, strides, pads)
  block, stages, _ = ARCHS[arch]
  for i, n in enumerate(stages):
    for j in range(n):
      p = f'l{i}_{j}_'
      names = ('a', 'b') if block == 'basic' else ('a', 'b', 'c')
      y = h
      for k, s in enumerate(names):
        y = conv_bn(p + s, y, relu=k < len(names) - 1)
      res = conv_bn(p + 'down', h, relu=False) if p + 'down' in specs else h
      h = jax.nn.relu(y + res)
  return jnp.mean(h, spatial)


def make_step(arch: str, layout: str):
  def loss(params, x):
    f = forward(params, x, arch, layout)
    return jnp.mean(jnp.square(f))

  return jax.jit(jax.value_and_grad(loss))


def images(size: int, batch: int, layout: str, seed: int = 0):
  x = np.random.default_rng(seed).normal(size=(batch, size, size, 3))
  x = x.astype(np.float32)
  return x.transpose(0, 3, 1, 2).copy() if layout == 'NCHW' else x


def grads_rel_diff(g_nhwc, g_nchw):
  """|NHWC gradient - NCHW gradient| / |NHWC gradient|, over all parameters."""
  diff = total = 0.0
  for name, g in g_nhwc.items():
    for key, a in g.items():
      b = np.asarray(g_nchw[name][key])
      if key == 'kernel':
        b = np.transpose(b, (2, 3, 1, 0))  # OIHW -> HWIO
      a = np.asarray(a)
      diff += float(np.sum(np.square(a - b)))
      total += float(np.sum(np.square(a)))
  return float(np.sqrt(diff / total))


def run_case(arch: str, size: int, batch: int, steps: int):
  """Medians of `steps` alternated timed steps per layout, after a compile."""
  params = init_params(arch)
  progs, args, first, compile_s = {}, {}, {}, {}
  for layout in LAYOUTS:
    progs[layout] = make_step(arch, layout)
    args[layout] = (
      jax.device_put(to_layout(params, layout)),
      jax.device_put(images(size, batch, layout)),
    )
    t = time.perf_counter()
    first[layout] = jax.block_until_ready(progs[layout](*args[layout]))
    compile_s[layout] = time.perf_counter() - t
  times = {layout: [] for layout in LAYOUTS}
  for _ in range(steps):
    for layout in LAYOUTS:
      t = time.perf_counter()
      jax.block_until_ready(progs[layout](*args[layout]))
      times[layout].append(time.perf_counter() - t)
  med = {k: statistics.median(v) for k, v in times.items()}
  return {
    'arch': arch,
    'size': size,
    'batch': batch,
    'steps': steps,
    'nhwc_s': med['NHWC'],
    'nchw_s': med['NCHW'],
    'compile_s': compile_s,
    'loss': {k: float(v[0]) for k, v in first.items()},
    'grad_rel_diff': grads_rel_diff(first['NHWC'][1], first['NCHW'][1]),
  }


def parse_cases(text: str):
  out = []
  for item in text.split(','):
    arch, size, batch, steps = item.split(':')
    if arch not in ARCHS:
      raise SystemExit(f'unknown backbone {arch!r}; valid: {sorted(ARCHS)}')
    out.append((arch, int(size), int(batch), int(steps)))
  return out


def main(argv=None) -> str:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--cases', default='resnet18:96:64:5,resnet50:224:32:2')
  a = p.parse_args(argv)
  lines = [
    f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, '
    f'{platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}, '
    f'load {os.getloadavg()[0]:.1f}',
    '',
    '| backbone | size | batch | NHWC s/step | NCHW s/step | NHWC/NCHW '
    'time (>1: NCHW faster) | compile s NHWC / NCHW | loss NHWC / NCHW | '
    'rel grad diff (L2) | timed steps |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ]
  print('\n'.join(lines), flush=True)
  for case in parse_cases(a.cases):
    r = run_case(*case)
    row = (
      f'| {r["arch"]} | {r["size"]} | {r["batch"]} | {r["nhwc_s"]:.3f} | '
      f'{r["nchw_s"]:.3f} | {r["nhwc_s"] / r["nchw_s"]:.2f}x | '
      f'{r["compile_s"]["NHWC"]:.1f} / {r["compile_s"]["NCHW"]:.1f} | '
      f'{r["loss"]["NHWC"]:.6f} / {r["loss"]["NCHW"]:.6f} | '
      f'{r["grad_rel_diff"]:.1e} | {r["steps"]} |'
    )
    print(row, flush=True)
    lines.append(row)
  return '\n'.join(lines)


if __name__ == '__main__':
  main()
