"""Images/s of the jitted train step per objective, beside a PyTorch eager step.

  python benchmarks/train_step.py [--objectives rotnet,jigsaw,moco,simclr]
      [--cases resnet18:96:5,resnet50:224:2] [--batch_size 32] [--warmup 1]
      [--variants small_map,after] [--xla_flags '...'] [--no_torch]
      [--torch_channels_last]

For every case BACKBONE:SIZE:STEPS and objective it times the sspr_jax train
step (`trainer.make_train_step`: on-device views from uint8 images, forward,
backward, optimiser; thesis heads, losses and optimisers) and a PyTorch eager
step of the same network, loss and optimiser on pre-made float views (no
augmentation; the JAX augmentation cost is timed apart and shown). Steps of
the two frameworks alternate (JAX variant(s), torch, JAX, torch, ...) so that
load from other processes on the shared CPU hits both alike; the table gives
medians of STEPS timed steps after `--warmup` untimed ones (the JAX compile
run is extra).

Images/s counts SOURCE images (the batch, 32): RotNet feeds the rotations
per image its config sets (`rotnet.rotations_per_image`: 1, the thesis's, so
B backbone images; both sides follow it), Jigsaw 9 tiles per image (9B
tile images of size/3 - jitter px), MoCo 2 views (B with gradient + B
through the key encoder), SimCLR 2 views (2B with gradient). The
`views/step` column says how many backbone images one step processes.

Sizes: RotNet/MoCo/SimCLR views are SIZE px crops of uint8 images of
round(SIZE * 256 / 224) px (the thesis' 256 -> 224); Jigsaw cuts 3x3 tiles
from round(SIZE * 256 / 224) px images with jitter round(21 * SIZE / 224)
(64 px tiles at SIZE 224, the thesis setting).

Variants of the JAX step, all timed in one process beside the same torch
steps (each variant is its own jitted program; XLA options go per compile):
  before:    the stem max-pool via `flax.linen.max_pool` (JAX's gradient of
             reduce_window: variadic reduce-window over iotas + scatter);
  after:     `resnet.max_pool` (custom VJP). The variants below all build
             on it;
  small_map: `after` plus convolutions on maps of <= 2x2 pixels (and
             strided k x k ones into them) as one matmul each
             (`resnet.small_map_conv`): the model as it trains, and the
             default variant; `after` differs from it only on Jigsaw's
             ResNet-18 96 px / ResNet-50 224 px tiles, which end in 1x1 /
             2x2 maps;
  fast_math: compiled with `xla_cpu_enable_fast_math` (LLVM reassociation
             and contraction; NaN/Inf/division/functions still honoured, so
             the trainer's non-finite checks keep working);
  fast_math_full: fast math with the honour_* options off too (may break
             NaN checks: a speed probe only);
  bf16:      `config.model.dtype = 'bfloat16'` (bf16 compute, fp32 params);
  bf16_fast_math: both;
  no_ynn:    small_map compiled with no YNNPACK library fusions
             (`xla_cpu_experimental_ynn_fusion_type=''`; the default,
             from `sspr_jax/__init__.py`, only keeps reductions out);
  ynn_conv:  small_map with only the convolutions in YNNPACK.
`--xla_flags` is added to XLA_FLAGS before JAX starts (e.g. to try
`--xla_cpu_use_onednn=true`); it applies to every variant.

PyTorch is a benchmark-only extra (`pip install torch==2.13.0`, CPU build);
torchvision is not available beside it, so the ResNets below are written out
(torchvision's architecture).
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
if REPO not in sys.path:  # `python benchmarks/train_step.py` from anywhere
  sys.path.insert(0, REPO)

try:
  import torch
  from torch import nn
  import torch.nn.functional as F
except ImportError:  # the JAX side runs without torch (--no_torch)
  import types

  torch = F = None
  nn = types.SimpleNamespace(Module=object)
  # The torch classes below still define (never used); --no_torch runs.
  _torch_stub = types.SimpleNamespace(no_grad=lambda: lambda f: f)
  torch_optimizer = object
else:
  _torch_stub = torch
  torch_optimizer = torch.optim.Optimizer


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, cin, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = _downsample(cin, planes, stride)

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (self.downsample(x) if self.downsample else x))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = _downsample(cin, planes * 4, stride)

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return F.relu(y + (self.downsample(x) if self.downsample else x))


def _downsample(cin, cout, stride):
  if stride == 1 and cin == cout:
    return None
  return nn.Sequential(
    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
  )


class ResNet(nn.Module):
  """torchvision ResNet without fc: images [B, 3, H, W] -> pooled [B, C]."""

  def __init__(self, block, layers, width=64):
    super().__init__()
    self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    stages, cin = [], width
    for i, n in enumerate(layers):
      planes = width * 2**i
      blocks = []
      for j in range(n):
        blocks.append(block(cin, planes, 2 if i > 0 and j == 0 else 1))
        cin = planes * block.expansion
      stages.append(nn.Sequential(*blocks))
    self.layer1, self.layer2, self.layer3, self.layer4 = stages
    self.num_features = cin
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


BACKBONES = {
  'resnet18': lambda: ResNet(BasicBlock, (2, 2, 2, 2)),
  'resnet34': lambda: ResNet(BasicBlock, (3, 4, 6, 3)),
  'resnet50': lambda: ResNet(Bottleneck, (3, 4, 6, 3)),
  'resnet_tiny': lambda: ResNet(BasicBlock, (1, 1, 1, 1), width=8),
}


def projection_head(cin, hidden_dims, out_dim):
  layers = []
  for d in hidden_dims:
    layers += [nn.Linear(cin, d), nn.ReLU()]
    cin = d
  return nn.Sequential(*layers, nn.Linear(cin, out_dim))


class JigsawHead(nn.Module):
  """Per-tile Linear -> BN -> ReLU, concat the tiles, Linear (VISSL)."""

  def __init__(self, cin, tiles, tile_dim, num_permutations):
    super().__init__()
    self.tile_fc = nn.Linear(cin, tile_dim)
    self.tile_bn = nn.BatchNorm1d(tile_dim)
    self.fc = nn.Linear(tiles * tile_dim, num_permutations)
    self.tiles = tiles

  def forward(self, x):  # [B * tiles, C]
    x = F.relu(self.tile_bn(self.tile_fc(x)))
    return self.fc(x.reshape(-1, self.tiles * x.shape[-1]))


class Network(nn.Module):
  def __init__(self, backbone, head):
    super().__init__()
    self.backbone, self.head = backbone, head

  def forward(self, x):
    f = self.backbone(x)
    return f, self.head(f)


def ntxent(z1, z2, temperature):
  z = F.normalize(torch.cat([z1, z2]), dim=1)
  logits = z @ z.t() / temperature
  n = z1.shape[0]
  logits = logits.masked_fill(
    torch.eye(2 * n, dtype=torch.bool), torch.finfo(logits.dtype).min
  )
  positives = (torch.arange(2 * n) + n) % (2 * n)
  return F.cross_entropy(logits, positives)


def infonce(q, k, queue, temperature):
  q = F.normalize(q, dim=1)
  k = F.normalize(k, dim=1).detach()
  logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1)
  labels = torch.zeros(q.shape[0], dtype=torch.long)
  return F.cross_entropy(logits / temperature, labels)


class LARS(torch_optimizer):
  """optax.lars: wd and trust ratio on weights (ndim > 1), then momentum."""

  def __init__(
    self, params, lr, momentum=0.9, weight_decay=1e-6, trust_coefficient=0.001
  ):
    super().__init__(
      params,
      dict(
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        trust_coefficient=trust_coefficient,
      ),
    )

  @_torch_stub.no_grad()
  def step(self):
    for g in self.param_groups:
      for p in g['params']:
        if p.grad is None:
          continue
        d = p.grad
        if p.ndim > 1:
          d = d.add(p, alpha=g['weight_decay'])
          pn, dn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
          ratio = torch.where(
            (pn > 0) & (dn > 0),
            g['trust_coefficient'] * pn / dn,
            torch.ones_like(pn),
          )
          d = d * ratio
        buf = self.state[p].get('momentum_buffer')
        if buf is None:
          buf = self.state[p]['momentum_buffer'] = d.clone()
        else:
          buf.mul_(g['momentum']).add_(d)
        p.add_(buf, alpha=-g['lr'])


def sgd_param_groups(model, weight_decay):
  """Weight decay on kernels only (sspr_jax's `decay_mask`)."""
  decay = [p for p in model.parameters() if p.ndim > 1]
  rest = [p for p in model.parameters() if p.ndim <= 1]
  return [
    {'params': decay, 'weight_decay': weight_decay},
    {'params': rest, 'weight_decay': 0.0},
  ]


class Step:
  """One eager train step of `objective` on pre-made float views.

  `views()` returns the inputs for one step (NCHW float32, channels_last if
  asked); `__call__(inputs)` runs forward, backward and the optimiser.
  """

  def __init__(
    self,
    objective: str,
    backbone: str,
    batch: int,
    size: int,  # pylint: disable=too-many-arguments
    *,
    tile: int = 0,
    num_permutations: int = 2000,
    tile_dim: int = 1000,
    hidden_dims=(2048,),
    out_dim: int = 128,
    queue_size: int = 65536,
    channels_last: bool = False,
    rotations_per_image: int = 1,
    seed: int = 0,
  ):
    torch.manual_seed(seed)
    self.objective, self.batch, self.size = objective, batch, size
    self.rotations_per_image = rotations_per_image
    self.tile = tile
    self.channels_last = channels_last
    trunk = BACKBONES[backbone]()
    c = trunk.num_features
    if objective == 'rotnet':
      head = nn.Linear(c, 4)
    elif objective == 'jigsaw':
      head = JigsawHead(c, 9, tile_dim, num_permutations)
    else:
      head = projection_head(c, hidden_dims, out_dim)
    self.net = Network(trunk, head)
    if objective == 'moco':
      for m in trunk.modules():  # zero-init last BN gamma (thesis MoCo)
        if isinstance(m, (BasicBlock, Bottleneck)):
          nn.init.zeros_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight)
      self.key_net = Network(
        BACKBONES[backbone](), projection_head(c, hidden_dims, out_dim)
      )
      self.key_net.load_state_dict(self.net.state_dict())
      for p in self.key_net.parameters():
        p.requires_grad_(False)
      self.queue = F.normalize(torch.randn(queue_size, out_dim), dim=1)
      self.ptr = 0
    if channels_last:
      self.net = self.net.to(memory_format=torch.channels_last)
      if objective == 'moco':
        self.key_net = self.key_net.to(memory_format=torch.channels_last)
    self.net.train()
    if objective == 'simclr':
      self.opt = LARS(self.net.parameters(), lr=0.3 * batch / 256)
    else:
      self.opt = torch.optim.SGD(
        sgd_param_groups(self.net, 1e-4),
        lr=0.1,
        momentum=0.9,
        nesterov=objective == 'moco',
      )
    self.num_classes = 4 if objective == 'rotnet' else num_permutations
    self._gen = torch.Generator().manual_seed(seed)

  def _images(self, n, s):
    x = torch.randn(n, 3, s, s, generator=self._gen)
    return (
      x.contiguous(memory_format=torch.channels_last)
      if self.channels_last
      else x
    )

  def views(self):
    b, s = self.batch, self.size
    if self.objective == 'rotnet':
      x = self._images(b, s)
      if self.rotations_per_image == 4:  # every image at all four
        x = torch.stack([torch.rot90(x, r, (2, 3)) for r in range(4)], 1)
        labels = torch.arange(4).repeat(b)
      else:  # one random rotation per image (the thesis; sspr_jax default)
        labels = torch.randint(0, 4, (b,), generator=self._gen)
        x = torch.stack(
          [torch.rot90(xi, int(r), (1, 2)) for xi, r in zip(x, labels)]
        )
      x = x.reshape(-1, 3, s, s)
      if self.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
      return x, labels
    if self.objective == 'jigsaw':
      return (
        self._images(9 * b, self.tile),
        torch.randint(0, self.num_classes, (b,), generator=self._gen),
      )
    return self._images(b, s), self._images(b, s)

  def __call__(self, inputs):
    self.opt.zero_grad(set_to_none=True)
    if self.objective in ('rotnet', 'jigsaw'):
      x, labels = inputs
      _, logits = self.net(x)
      loss = F.cross_entropy(logits, labels)
    elif self.objective == 'simclr':
      x1, x2 = inputs
      _, z = self.net(torch.cat([x1, x2]))
      loss = ntxent(z[: self.batch], z[self.batch :], 0.1)
    else:  # moco
      x1, x2 = inputs
      with torch.no_grad():  # EMA key encoder first, as in MoCo
        for pk, pq in zip(self.key_net.parameters(), self.net.parameters()):
          pk.mul_(0.999).add_(pq.detach(), alpha=0.001)
        _, k = self.key_net(x2)
      _, q = self.net(x1)
      loss = infonce(q, k, self.queue, 0.2)
    loss.backward()
    self.opt.step()
    if self.objective == 'moco':
      with torch.no_grad():
        n = k.shape[0]
        self.queue[self.ptr : self.ptr + n] = F.normalize(k, dim=1)
        self.ptr = (self.ptr + n) % self.queue.shape[0]
    return float(loss.detach())


# ----------------------------------------------------------------------------
# JAX side and the measurement loop.

OBJECTIVES = ('rotnet', 'jigsaw', 'moco', 'simclr')
_FAST_MATH = {'xla_cpu_enable_fast_math': True}
_YNN = 'xla_cpu_experimental_ynn_fusion_type'
_YNN_CONV = 'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'
_FAST_MATH_FULL = dict(
  _FAST_MATH,
  xla_cpu_fast_math_honor_infs=False,
  xla_cpu_fast_math_honor_nans=False,
  xla_cpu_fast_math_honor_division=False,
  xla_cpu_fast_math_honor_functions=False,
)
# variant -> (stem max-pool via resnet.max_pool, convs on <= 2x2 maps as
# matmuls (resnet.small_map_conv), model dtype, XLA options)
VARIANT_SETTINGS = {
  'before': (False, False, 'float32', {}),
  'after': (True, False, 'float32', {}),
  'fast_math': (True, False, 'float32', _FAST_MATH),
  'fast_math_full': (True, False, 'float32', _FAST_MATH_FULL),
  'bf16': (True, False, 'bfloat16', {}),
  'bf16_fast_math': (True, False, 'bfloat16', _FAST_MATH),
  'small_map': (True, True, 'float32', {}),
  # XLA:CPU's library fusions: none in YNNPACK, or only the convolutions
  # (sspr_jax's default keeps reductions out: `sspr_jax/__init__.py`).
  'no_ynn': (True, True, 'float32', {_YNN: ''}),
  'ynn_conv': (True, True, 'float32', {_YNN: _YNN_CONV}),
}
VARIANTS = tuple(VARIANT_SETTINGS)


def source_size(size: int) -> int:
  return int(round(size * 256 / 224))


def jigsaw_geometry(size: int) -> tuple[int, int]:
  """(jitter, tile px) of Jigsaw at view SIZE (thesis: 21, 64 at 224)."""
  jitter = int(round(21 * size / 224))
  return jitter, source_size(size) // 3 - jitter


def rotations_per_image() -> int:
  """RotNet's rotations per image in the config the JAX step runs."""
  return jax_config('rotnet', 'resnet18', 224, 1).rotnet.get(
    'rotations_per_image', 1
  )


def views_per_step(objective: str, batch: int) -> int:
  """Backbone images one step processes, as the JAX config sets it up."""
  if objective == 'rotnet':
    return rotations_per_image() * batch
  return {'jigsaw': 9, 'moco': 2, 'simclr': 2}[objective] * batch


def jax_config(objective: str, backbone: str, size: int, batch: int):
  """The thesis config of `objective` with backbone/size/batch replaced."""
  import importlib  # pylint: disable=import-outside-toplevel

  config = importlib.import_module(f'configs.{objective}').get_config()
  config.model.backbone = backbone
  config.batch_size = batch
  config.input.canvas_size = source_size(size)
  config.input.shorter_side = 0
  settings = config[objective]
  if objective == 'jigsaw':
    settings.jitter = jigsaw_geometry(size)[0]
    settings.crop_size = source_size(size) - 1  # 255 of 256, as the thesis
  else:
    settings.view_size = size
  config.total_steps = 1000
  return config


class JaxStep:
  """The sspr_jax train step of one objective, jitted, on a fixed batch."""

  def __init__(
    self,
    objective: str,
    backbone: str,
    size: int,
    batch: int,
    variant: str,
    seed: int = 0,
  ):
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel
    from sspr_jax.objectives import build_objective  # pylint: disable=import-outside-toplevel
    from sspr_jax.train import optim, trainer  # pylint: disable=import-outside-toplevel

    self.jax = jax
    if variant not in VARIANTS:
      raise ValueError(f'Unknown variant {variant!r}; valid: {VARIANTS}.')
    fast_max_pool, small_map, dtype, compiler_options = VARIANT_SETTINGS[
      variant
    ]
    config = jax_config(objective, backbone, size, batch)
    config.model.dtype = dtype
    obj = build_objective(config)
    obj.network = obj.network.clone(
      backbone=obj.network.backbone.clone(
        fast_max_pool=fast_max_pool, small_map_conv=small_map
      )
    )
    schedule = optim.learning_rate(
      config, steps_per_epoch=100, total_steps=1000, global_batch=batch
    )
    tx = optim.optimizer(config, schedule)
    init_rng, train_rng = jax.random.split(jax.random.key(seed))
    s = config.input.canvas_size
    # A canvas batch as the pipeline gives it: whole canvases valid.
    self.images = {
      'image': jnp.asarray(
        np.random.default_rng(seed).integers(
          0, 256, (batch, s, s, 3), dtype=np.uint8
        )
      ),
      'size': jnp.full((batch, 2), s, jnp.int32),
    }
    spec = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), self.images
    )

    @jax.jit
    def init(rng):
      params, batch_stats, extra = obj.init(rng, spec)
      return trainer.TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        extra=extra,
        nonfinite_step=jnp.full((), -1, jnp.int32),
      )

    self.state = jax.block_until_ready(init(init_rng))
    self.step_fn = jax.jit(
      trainer.make_train_step(obj, tx, schedule, train_rng),
      donate_argnums=(0,),
      compiler_options=compiler_options or None,
    )
    self.views_fn = jax.jit(
      obj.views, compiler_options=compiler_options or None
    )
    self.rng = jax.random.key(seed + 1)

  def __call__(self):
    self.state, metrics = self.step_fn(self.state, self.images)
    self.jax.block_until_ready((self.state, metrics))
    return metrics

  def views(self):
    self.jax.block_until_ready(self.views_fn(self.rng, self.images))


def _timed(fn) -> float:
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def run_case(objective, backbone, size, steps, args, log):
  """Times one (objective, backbone, size); returns a list of result rows."""
  batch = args.batch_size
  jax_steps, compile_s, first_loss = {}, {}, {}
  for variant in args.variants:
    t = time.perf_counter()
    jax_steps[variant] = JaxStep(objective, backbone, size, batch, variant)
    # Compile + first run; every variant starts from the same parameters and
    # batch, so its first loss says whether it computes the same values.
    first_loss[variant] = float(jax_steps[variant]()['loss'])
    compile_s[variant] = time.perf_counter() - t
    log(
      f'  jax {variant}: init+compile+first step {compile_s[variant]:.1f} s, '
      f'first loss {first_loss[variant]:.6f}'
    )
  ref = None
  if not args.no_torch:
    tile = jigsaw_geometry(size)[1] if objective == 'jigsaw' else 0
    ref = Step(
      objective,
      backbone,
      batch,
      size,
      tile=tile,
      channels_last=args.torch_channels_last,
      rotations_per_image=rotations_per_image(),
    )
    ref_inputs = ref.views()
    ref(ref_inputs)
  first = jax_steps[args.variants[-1]]
  first.views()
  for _ in range(args.warmup):
    for step in jax_steps.values():
      step()
    if ref is not None:
      ref(ref_inputs)
  times = {v: [] for v in args.variants}
  times['torch'], times['views'] = [], []
  for i in range(steps):
    for variant, step in jax_steps.items():
      times[variant].append(_timed(step))
    if ref is not None:
      times['torch'].append(_timed(lambda step=ref: step(ref_inputs)))
    times['views'].append(_timed(first.views))
    log(
      f'  step {i + 1}/{steps}: '
      + ', '.join(f'{k} {v[-1]:.2f} s' for k, v in times.items() if v)
    )
  med = {k: statistics.median(v) for k, v in times.items() if v}
  load = os.getloadavg()[0]
  rows = []
  for variant in args.variants:
    rows.append(
      dict(
        objective=objective,
        model=f'{backbone} {size}px',
        views=views_per_step(objective, batch),
        variant=variant,
        jax_s=med[variant],
        jax_img_s=batch / med[variant],
        views_s=med['views'],
        torch_s=med.get('torch'),
        torch_img_s=batch / med['torch'] if 'torch' in med else None,
        compile_s=compile_s[variant],
        first_loss=first_loss[variant],
        load=load,
        steps=steps,
      )
    )
  del jax_steps, ref
  return rows


def format_table(rows) -> str:
  head = (
    '| objective | model | views/step | JAX variant | JAX s/step | JAX '
    'img/s | (of which views s) | PyTorch s/step | PyTorch img/s | '
    'JAX/PyTorch | timed steps | first loss | load (1 min, case end) |'
  )
  lines = [head, '|' + '---|' * head.count(' | ') + '---|']
  for r in rows:
    t = r['torch_s']
    lines.append(
      f'| {r["objective"]} | {r["model"]} | {r["views"]} | {r["variant"]} '
      f'| {r["jax_s"]:.2f} | {r["jax_img_s"]:.2f} | {r["views_s"]:.2f} | '
      + (
        f'{t:.2f} | {r["torch_img_s"]:.2f} | {t / r["jax_s"]:.2f}x'
        if t
        else '- | - | -'
      )
      + f' | {r["steps"]} | {r["first_loss"]:.6f} | {r["load"]:.1f} |'
    )
  return '\n'.join(lines)


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--objectives', default=','.join(OBJECTIVES))
  p.add_argument(
    '--cases',
    default='resnet18:96:5,resnet50:224:2',
    help='BACKBONE:SIZE:TIMED_STEPS, comma-separated. ResNet-50 '
    'at 224 px takes minutes per step on 2 CPU cores.',
  )
  p.add_argument('--batch_size', type=int, default=32)
  p.add_argument(
    '--warmup', type=int, default=1, help='untimed steps after the compile run'
  )
  p.add_argument(
    '--variants',
    default='small_map',
    help=f'JAX model variants, from {",".join(VARIANTS)} (small_map: the '
    'model as it trains)',
  )
  p.add_argument(
    '--xla_flags', default='', help='appended to XLA_FLAGS before JAX starts'
  )
  p.add_argument(
    '--threads',
    type=int,
    default=0,
    help='torch intra-op threads (0: one per core)',
  )
  p.add_argument('--no_torch', action='store_true')
  p.add_argument('--torch_channels_last', action='store_true')
  args = p.parse_args(argv)
  args.objectives = [o for o in args.objectives.split(',') if o]
  args.variants = [v for v in args.variants.split(',') if v]
  cases = []
  for case in args.cases.split(','):
    backbone, size, steps = case.split(':')
    cases.append((backbone, int(size), int(steps)))
  args.cases = cases
  return args


def main(argv=None) -> str:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.xla_flags:
    os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '') + ' ' + args.xla_flags
    ).strip()
  if not args.no_torch:
    if torch is None:
      raise SystemExit(
        'PyTorch is not installed: pip install torch==2.13.0 '
        '(CPU build), or pass --no_torch.'
      )
    torch.set_num_threads(args.threads or os.cpu_count())
  import jax  # pylint: disable=import-outside-toplevel

  def log(msg):
    print(msg, file=sys.stderr, flush=True)

  header = [
    f'# train step benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC',
    f'# machine: {platform.machine()}, {os.cpu_count()} CPU cores, '
    f'load average at start {os.getloadavg()[0]:.2f}; jax {jax.__version__} '
    f'on {jax.devices()[0].platform}'
    + (
      f', torch {torch.__version__} ({torch.get_num_threads()} threads'
      f'{", channels_last" if args.torch_channels_last else ""})'
      if not args.no_torch
      else ''
    ),
    f'# XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}',
    f'# batch {args.batch_size} source images; cases (backbone:px:timed '
    f'steps) {", ".join(f"{b}:{s}:{n}" for b, s, n in args.cases)}; '
    f'{args.warmup} warm-up step(s) after the compile run; medians.',
    '# img/s = source images/s; views/step = backbone images per step. '
    'JAX step includes its on-device augmentation (its cost alone: '
    '"of which views"); the PyTorch step gets ready float views.',
  ]
  for line in header:
    log(line)
  rows = []
  for backbone, size, steps in args.cases:
    for objective in args.objectives:
      log(f'{objective} {backbone} {size}px:')
      rows += run_case(objective, backbone, size, steps, args, log)
  out = '\n'.join(header) + '\n\n' + format_table(rows) + '\n'
  loads = os.getloadavg()
  out += (
    f'\n# load average at end {loads[0]:.2f} (1 min), {loads[2]:.2f} (15 min)\n'
  )
  print(out)
  return out


if __name__ == '__main__':
  main()
