"""ResNet backbones (torchvision architecture) in Flax Linen, NHWC.

The output is the global-average-pool feature (512-d for ResNet-18/34, 2048-d
for ResNet-50), i.e. torchvision's model without its ``fc`` layer.

Variable names follow torchvision so a torchvision ``state_dict`` maps on
mechanically (see ``torch_key_to_flax_path``):

=================================  ==========================================
torchvision key                    Flax variable
=================================  ==========================================
``conv1.weight``                   ``params/conv1/kernel``
``bn1.weight`` / ``bn1.bias``      ``params/bn1/scale`` / ``params/bn1/bias``
``bn1.running_mean`` / ``_var``    ``batch_stats/bn1/mean`` / ``.../var``
``layer2.0.conv1.weight``          ``params/layer2_0/conv1/kernel``
``layer2.0.downsample.0.weight``   ``params/layer2_0/downsample_conv/kernel``
``layer2.0.downsample.1.*``        ``.../layer2_0/downsample_bn/*``
=================================  ==========================================

Conv kernels are OIHW in torch and HWIO here: ``w.transpose(2, 3, 1, 0)``.
torch's BatchNorm keeps the unbiased running variance and Flax the biased one;
the difference is negligible for imported statistics and irrelevant for
training from scratch.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

ModuleDef = Any

# torchvision: kaiming_normal_(mode='fan_out', nonlinearity='relu').
conv_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class BasicBlock(nn.Module):
  """Two 3x3 convolutions (ResNet-18/34)."""

  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  zero_init_residual: bool = False
  expansion = 1

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(
      self.features,
      (3, 3),
      (self.strides, self.strides),
      padding=((1, 1), (1, 1)),
      name='conv1',
    )(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(
      self.features, (3, 3), padding=((1, 1), (1, 1)), name='conv2'
    )(y)
    y = self.norm(
      name='bn2', scale_init=_last_bn_scale_init(self.zero_init_residual)
    )(y)
    return nn.relu(y + _shortcut(self, residual, self.features))


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided, torchvision v1.5) -> 1x1 x4 (ResNet-50+)."""

  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  zero_init_residual: bool = False
  expansion = 4

  @nn.compact
  def __call__(self, x):
    residual = x
    y = self.conv(self.features, (1, 1), name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(
      self.features,
      (3, 3),
      (self.strides, self.strides),
      padding=((1, 1), (1, 1)),
      name='conv2',
    )(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(self.features * 4, (1, 1), name='conv3')(y)
    y = self.norm(
      name='bn3', scale_init=_last_bn_scale_init(self.zero_init_residual)
    )(y)
    return nn.relu(y + _shortcut(self, residual, self.features * 4))


def _pool_windows(xp, window: int, stride: int, out_hw):
  """The window*window strided views of padded xp, in row-major order."""
  ho, wo = out_hw
  for i in range(window):
    for j in range(window):
      yield (
        i,
        j,
        lax.slice(
          xp,
          (0, i, j, 0),
          (
            xp.shape[0],
            i + stride * (ho - 1) + 1,
            j + stride * (wo - 1) + 1,
            xp.shape[3],
          ),
          (1, stride, stride, 1),
        ),
      )


def _pool_pad(x, padding: int, value):
  pad = (padding, padding, 0)
  return lax.pad(
    x, jnp.asarray(value, x.dtype), ((0, 0, 0), pad, pad, (0, 0, 0))
  )


def _max_pool_fwd(x, window, stride, padding):
  h, w = x.shape[1:3]
  out_hw = (
    (h + 2 * padding - window) // stride + 1,
    (w + 2 * padding - window) // stride + 1,
  )
  xp = _pool_pad(x, padding, -jnp.inf)
  y = None
  for _, _, view in _pool_windows(xp, window, stride, out_hw):
    y = view if y is None else jnp.maximum(y, view)
  return y, (x, y)


def _max_pool_bwd(window, stride, padding, residuals, g):
  x, y = residuals
  out_hw = y.shape[1:3]
  xp = _pool_pad(x, padding, -jnp.inf)
  hp, wp = xp.shape[1:3]
  zero = jnp.zeros((), g.dtype)
  taken = jnp.zeros(y.shape, bool)
  dxp = jnp.zeros(xp.shape, g.dtype)
  for i, j, view in _pool_windows(xp, window, stride, out_hw):
    # The first maximum in row-major window order gets the gradient (torch).
    hit = (view == y) & ~taken
    taken = taken | hit
    span_h = stride * (out_hw[0] - 1) + 1
    span_w = stride * (out_hw[1] - 1) + 1
    dxp = dxp + lax.pad(
      jnp.where(hit, g, zero),
      zero,
      (
        (0, 0, 0),
        (i, hp - i - span_h, stride - 1),
        (j, wp - j - span_w, stride - 1),
        (0, 0, 0),
      ),
    )
  return (
    dxp[:, padding : padding + x.shape[1], padding : padding + x.shape[2]],
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x, window: int = 3, stride: int = 2, padding: int = 1):
  """Square max-pool on NHWC with symmetric -inf padding (torch's max_pool2d).

  Same values as ``nn.max_pool(x, (w, w), (s, s), ((p, p), (p, p)))``, but
  the forward is a chain of elementwise maxima over the strided window views
  and the gradient (to the first maximum of each window, as torch) is a fused
  select-and-pad sum. JAX's own gradient of ``reduce_window`` max is a
  variadic reduce-window over int32 iotas plus a scatter, ~3.5x slower on
  XLA:CPU; this made the stem max-pool ~10 % of a ResNet-18 96 px step.
  """
  return _max_pool_fwd(x, window, stride, padding)[0]


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


# Convolutions on feature maps of at most this many pixels run as one matmul.
SMALL_MAP_PIXELS = 4
_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _taps(size_in: int, size_out: int, kernel: int, stride: int, pad: int):
  """[in, out] kernel tap linking input i to output o (-1 where none)."""
  tap = jnp.arange(size_in)[:, None] + pad - stride * jnp.arange(size_out)[None]
  return jnp.where((tap >= 0) & (tap < kernel), tap, -1)


def small_map_conv(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
):
  """``lax.conv_general_dilated``, as one matmul when the map is tiny.

  XLA:CPU (YNNPACK, jaxlib 0.10.2) convolves [N, 2, 2, C] maps at ~1 GFLOP/s
  (3x3, N = 288, C = 512: 3.9 s forward vs 16 ms as a matmul), which is where
  Jigsaw's 64 px tiles end in ResNet-50 (and the 4x4 -> 2x2 strided conv
  before them is worse still in its backward). An NHWC/HWIO conv on an input
  of at most ``SMALL_MAP_PIXELS`` pixels (or a strided k x k conv, k > 1,
  from at most 4x that many to at most that many) is the same linear map as
  the dense matrix
  D[(hi, wi, ci), (ho, wo, co)] = rhs[tap_h(hi, ho), tap_w(wi, wo), ci, co]
  (zero where the window does not cover the input pixel, i.e. at padding),
  so it is computed as ``lhs.reshape(N, -1) @ D``: the same values up to
  float summation order, with no more multiplies than the convolution's on
  <= 4 pixels (every input pixel is inside every window; at most 16/9 as
  many for the strided case). Anything else goes to
  ``lax.conv_general_dilated`` unchanged.
  """
  conv = functools.partial(
    lax.conv_general_dilated,
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=lhs_dilation,
    rhs_dilation=rhs_dilation,
    dimension_numbers=dimension_numbers,
    feature_group_count=feature_group_count,
    batch_group_count=batch_group_count,
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
  if (
    lhs.ndim != 4
    or any(d != 1 for d in (lhs_dilation or ()) + (rhs_dilation or ()))
    or feature_group_count != 1
    or batch_group_count != 1
    or dimension_numbers
    != lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  ):
    return conv()
  n, h, w, cin = lhs.shape
  kh, kw, _, cout = rhs.shape
  pixels_out = -(-h // window_strides[0]) * -(-w // window_strides[1])
  if h * w > SMALL_MAP_PIXELS and not (
    # Also a strided kxk (k > 1) conv with a tiny output, e.g. ResNet-50's
    # first layer4 conv on 64 px tiles (4x4 -> 2x2, 3x3 stride 2: backward
    # 9.6 s as a conv, 0.3 s as a matmul with 64 / 36 of its multiplies).
    kh * kw > 1
    and h * w <= 4 * SMALL_MAP_PIXELS
    and pixels_out <= SMALL_MAP_PIXELS
  ):
    return conv()
  if isinstance(padding, str):  # 'SAME' (nn.Conv's default) or 'VALID'
    padding = lax.padtype_to_pads((h, w), (kh, kw), window_strides, padding)
  (sh, sw), ((ph, ph_hi), (pw, pw_hi)) = window_strides, padding
  ho = (h + ph + ph_hi - kh) // sh + 1
  wo = (w + pw + pw_hi - kw) // sw + 1
  th, tw = _taps(h, ho, kh, sh, ph), _taps(w, wo, kw, sw, pw)
  th_, tw_ = th[:, :, None, None], tw[None, None, :, :]  # [h, ho, w, wo]
  d = rhs[jnp.maximum(th_, 0), jnp.maximum(tw_, 0)]  # [h, ho, w, wo, ci, co]
  d = jnp.where(((th_ >= 0) & (tw_ >= 0))[..., None, None], d, 0)
  d = d.transpose(0, 2, 4, 1, 3, 5).reshape(h * w * cin, ho * wo * cout)
  y = jnp.matmul(
    lhs.reshape(n, h * w * cin),
    d,
    precision=precision,
    preferred_element_type=preferred_element_type,
  )
  return y.reshape(n, ho, wo, cout)


def _last_bn_scale_init(zero: bool) -> Callable:
  return nn.initializers.zeros if zero else nn.initializers.ones


def _shortcut(block, residual, out_features: int):
  """Identity, or strided 1x1 conv + BN when the shape changes (torchvision)."""
  if residual.shape[-1] == out_features and block.strides == 1:
    return residual
  residual = block.conv(
    out_features, (1, 1), (block.strides, block.strides), name='downsample_conv'
  )(residual)
  return block.norm(name='downsample_bn')(residual)


class ResNet(nn.Module):
  """torchvision-style ResNet trunk returning pooled features [B, C].

  Attributes:
    stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
    block_cls: ``BasicBlock`` or ``Bottleneck``.
    num_filters: width of the stem and the first stage (64 in torchvision).
    zero_init_residual: initialise the last BN scale of each block to 0, so
      every residual branch starts as zero (MoCo / Goyal et al.).
    dtype: computation dtype (e.g. ``jnp.bfloat16``); the output has it too.
    param_dtype: parameter dtype (keep float32 for bf16 training).
    bn_momentum, bn_epsilon: torch's momentum 0.1 is Flax's 0.9.
    fast_max_pool: the stem max-pool through ``max_pool`` (same values, cheaper
      gradient on CPU) instead of ``nn.max_pool``; False only for benchmarks.
    small_map_conv: convolutions on maps of <= ``SMALL_MAP_PIXELS`` pixels as
      one matmul (``small_map_conv``: same values, far faster on CPU for
      Jigsaw's tiles); False only for benchmarks and tests.
    stem: 'imagenet' (7x7 stride-2 conv + max-pool: /4) or 'cifar' (3x3
      stride-1 conv, no max-pool: the usual variant for 28-32 px images, as
      in SimCLR's and solo-learn's CIFAR models).
  """

  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_filters: int = 64
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  fast_max_pool: bool = True
  small_map_conv: bool = True
  stem: str = 'imagenet'

  @property
  def num_features(self) -> int:
    """Size of the pooled output feature."""
    return (
      self.num_filters
      * 2 ** (len(self.stage_sizes) - 1)
      * self.block_cls.expansion
    )

  @nn.compact
  def __call__(self, x, train: bool = True):
    """Maps images [B, H, W, 3] (normalised floats) to features [B, C].

    ``train=True`` normalises with batch statistics and updates the
    ``batch_stats`` collection (pass ``mutable=['batch_stats']``); under
    ``jax.jit`` with a batch sharded over devices the statistics are global
    (synchronised BN) without an ``axis_name``.
    """
    conv = functools.partial(
      nn.Conv,
      use_bias=False,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=conv_kernel_init,
      conv_general_dilated=small_map_conv if self.small_map_conv else None,
    )
    norm = functools.partial(
      nn.BatchNorm,
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=self.bn_epsilon,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )

    x = jnp.asarray(x, self.dtype)
    if self.stem == 'cifar':
      x = conv(
        self.num_filters, (3, 3), padding=((1, 1), (1, 1)), name='conv1'
      )(x)
      x = nn.relu(norm(name='bn1')(x))
    elif self.stem == 'imagenet':
      # Explicit symmetric padding as torch (XLA's 'SAME' pads asymmetrically
      # for strided convs, which would not match imported torch weights).
      x = conv(
        self.num_filters, (7, 7), (2, 2), padding=((3, 3), (3, 3)), name='conv1'
      )(x)
      x = nn.relu(norm(name='bn1')(x))
      if self.fast_max_pool:
        x = max_pool(x, 3, 2, 1)
      else:
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      raise ValueError(
        f"Unknown stem {self.stem!r}; valid: 'imagenet', 'cifar'."
      )
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = self.block_cls(
          features=self.num_filters * 2**i,
          strides=2 if i > 0 and j == 0 else 1,
          conv=conv,
          norm=norm,
          zero_init_residual=self.zero_init_residual,
          name=f'layer{i + 1}_{j}',
        )(x)
    return jnp.mean(x, axis=(1, 2))


ResNet18 = functools.partial(
  ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock
)
ResNet34 = functools.partial(
  ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock
)
ResNet50 = functools.partial(
  ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck
)
# For tests and smoke runs: all four stages (so strides and downsample paths
# are exercised), one block each, 8 base filters -> 64-d output.
ResNetTiny = functools.partial(
  ResNet, stage_sizes=(1, 1, 1, 1), block_cls=BasicBlock, num_filters=8
)

BACKBONES: dict[str, Callable[..., ResNet]] = {
  'resnet18': ResNet18,
  'resnet34': ResNet34,
  'resnet50': ResNet50,
  'resnet_tiny': ResNetTiny,
}


def get_backbone(name: str, **kwargs) -> ResNet:
  """Returns the backbone module ``name`` with ``kwargs`` as attributes.

  e.g. ``get_backbone('resnet50', zero_init_residual=True,
  dtype=jnp.bfloat16)``.
  """
  try:
    factory = BACKBONES[name]
  except KeyError:
    raise ValueError(
      f'Unknown backbone {name!r}; known: {", ".join(sorted(BACKBONES))}.'
    ) from None
  return factory(**kwargs)


def from_config(model, **kwargs) -> ResNet:
  """The backbone of a config's `model` section: `backbone`, and optionally
  `width` (first-stage filters, 0: the architecture's) and `stem`."""
  if model.get('width'):
    kwargs['num_filters'] = model['width']
  if model.get('stem', 'imagenet') != 'imagenet':
    kwargs['stem'] = model['stem']
  return get_backbone(model['backbone'], **kwargs)


def torch_key_to_flax_path(key: str) -> tuple[str, tuple[str, ...]]:
  """Maps a torchvision ResNet state_dict key to (collection, variable path).

  ``'layer1.0.downsample.1.running_var'`` ->
  ``('batch_stats', ('layer1_0', 'downsample_bn', 'var'))``. Raises ValueError
  for keys without a counterpart (``fc.*``, ``num_batches_tracked``).
  """
  parts = key.split('.')
  if parts[0] == 'fc' or parts[-1] == 'num_batches_tracked':
    raise ValueError(f'{key!r} has no counterpart in the backbone.')
  if parts[0].startswith('layer'):
    parts = [f'{parts[0]}_{parts[1]}'] + parts[2:]
  if parts[-2:-1] == ['0'] and 'downsample' in parts:
    parts = parts[:-3] + ['downsample_conv', parts[-1]]
  elif parts[-2:-1] == ['1'] and 'downsample' in parts:
    parts = parts[:-3] + ['downsample_bn', parts[-1]]
  *modules, leaf = parts
  is_conv = modules[-1].startswith('conv') or modules[-1] == 'downsample_conv'
  if leaf == 'weight':
    return 'params', (*modules, 'kernel' if is_conv else 'scale')
  if leaf == 'bias':
    return 'params', (*modules, 'bias')
  if leaf == 'running_mean':
    return 'batch_stats', (*modules, 'mean')
  if leaf == 'running_var':
    return 'batch_stats', (*modules, 'var')
  raise ValueError(f'Unrecognised key {key!r}.')
