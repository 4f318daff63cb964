"""Tests of the torch-free .pth reader and the torchvision ResNet import.

The reader tests use committed fixtures (testdata/make_torch_fixtures.py);
only the forward-equivalence test needs torch (skipped without it).
"""

import collections
import io
import os
import pickle
import zipfile

import jax
import numpy as np
import pytest

from sspr_jax.models import resnet
from sspr_jax.models import torch_import

TESTDATA = os.path.join(os.path.dirname(__file__), 'testdata')


@pytest.mark.parametrize(
  'name', ['tiny_state_dict.pth', 'tiny_state_dict_legacy.pth']
)
def test_reads_torch_saved_tensors_exactly(name):
  expected = np.load(os.path.join(TESTDATA, 'tiny_state_dict.npz'))
  loaded = torch_import.load(os.path.join(TESTDATA, name))
  assert isinstance(loaded, collections.OrderedDict)
  assert list(loaded) == list(expected.files)  # Order kept.
  for key in expected.files:
    got, want = loaded[key], expected[key]
    if key == 'bf16':  # Saved as the raw bits (npz has no bfloat16).
      assert str(got.dtype) == 'bfloat16'
      got = got.view(np.uint16)
    assert got.dtype == want.dtype, key
    assert got.shape == want.shape, key
    np.testing.assert_array_equal(got, want, err_msg=key)
    assert got.flags.c_contiguous
  assert loaded['bn.num_batches_tracked'].shape == ()


def test_load_state_dict_unwraps_and_strips_module_prefix():
  expected = np.load(os.path.join(TESTDATA, 'tiny_state_dict.npz'))
  raw = torch_import.load(os.path.join(TESTDATA, 'tiny_wrapped.pth'))
  assert raw['epoch'] == 3 and raw['arch'] == 'tiny'
  sd = torch_import.load_state_dict(os.path.join(TESTDATA, 'tiny_wrapped.pth'))
  assert list(sd) == ['conv.weight', 'bn.running_mean']
  for key in sd:
    np.testing.assert_array_equal(sd[key], expected[key])


def _write_zip(path, payload: bytes):
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('archive/data.pkl', payload)
    zf.writestr('archive/byteorder', 'little')


def test_refuses_arbitrary_classes(tmp_path):
  path = tmp_path / 'evil.pth'
  _write_zip(path, pickle.dumps(collections.Counter('abc')))
  with pytest.raises(pickle.UnpicklingError, match='collections.Counter'):
    torch_import.load(path)


def test_rejects_non_checkpoints(tmp_path):
  path = tmp_path / 'junk.pth'
  path.write_bytes(b'not a checkpoint at all')
  with pytest.raises(ValueError, match='neither a torch zip nor a legacy'):
    torch_import.load(path)
  with pytest.raises(ValueError, match='no data.pkl'):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
      zf.writestr('something.txt', 'x')
    (tmp_path / 'z.pth').write_bytes(buf.getvalue())
    torch_import.load(tmp_path / 'z.pth')


def test_resnet_import_lists_missing_and_unexpected_keys():
  state_dict = {
    'conv1.weight': np.zeros((64, 3, 7, 7), np.float32),
    'bn1.num_batches_tracked': np.array(0),  # ignored
    'fc.weight': np.zeros((1000, 512), np.float32),  # dropped
    'layer9.0.conv1.weight': np.zeros((1, 1, 1, 1), np.float32),
    'bn1.weight': np.zeros((3,), np.float32),
  }
  with pytest.raises(ValueError) as info:
    torch_import.load_torchvision_resnet(
      None, 'resnet18', state_dict=state_dict
    )
  message = str(info.value)
  assert 'missing' in message and 'params/layer4_1/bn2/scale' in message
  assert 'batch_stats/bn1/mean' in message
  assert 'unexpected (1): layer9.0.conv1.weight' in message
  assert 'shape mismatch (1): bn1.weight (3,)' in message
  assert 'conv1' not in message.split('missing')[1].split(',')[0]


# ----------------------------------------------------------------------------
# With torch: a torchvision-layout ResNet-18 forward equals the Flax one.


def _torch_resnet18(torch):
  nn = torch.nn

  class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(cout)
      self.relu = nn.ReLU(inplace=True)
      self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(cout)
      self.downsample = None
      if stride != 1 or cin != cout:
        self.downsample = nn.Sequential(
          nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.bn2(self.conv2(out))
      return self.relu(out + identity)

  class ResNet18(nn.Module):
    def __init__(self, num_classes=1000):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(64)
      self.relu = nn.ReLU(inplace=True)
      self.maxpool = nn.MaxPool2d(3, 2, 1)
      cin = 64
      for i, cout in enumerate((64, 128, 256, 512)):
        stride = 1 if i == 0 else 2
        setattr(
          self,
          f'layer{i + 1}',
          nn.Sequential(
            BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)
          ),
        )
        cin = cout
      self.avgpool = nn.AdaptiveAvgPool2d(1)
      self.fc = nn.Linear(512, num_classes)

    def features(self, x):
      x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
      for i in range(4):
        x = getattr(self, f'layer{i + 1}')(x)
      return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
      return self.fc(self.features(x))

  return ResNet18()


@pytest.mark.parametrize('legacy', [False, True])
def test_imported_resnet18_matches_torch_forward(tmp_path, legacy):
  torch = pytest.importorskip(
    'torch',
    reason='torch is not installed: a ~1 GB optional benchmark dependency',
  )
  torch.manual_seed(0)
  model = _torch_resnet18(torch)
  with torch.no_grad():  # Non-trivial BN statistics and affine parameters.
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
  model.eval()
  path = tmp_path / 'resnet18.pth'
  torch.save(
    model.state_dict(), path, _use_new_zipfile_serialization=not legacy
  )

  variables = torch_import.load_torchvision_resnet(path, 'resnet18')
  assert set(variables) == {'params', 'batch_stats'}
  assert 'fc' not in variables['params']
  # The evaluation baseline hook reads the same file.
  from sspr_jax.evaluate import backbone_names  # pylint: disable=g-import-not-at-top

  backbone = backbone_names.imagenet_backbone('resnet18', str(path))
  assert backbone.normalize is None  # ImageNet mean/std, as torchvision.
  jax.tree.map(np.testing.assert_array_equal, backbone.variables, variables)

  x = (
    np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
  )
  with torch.no_grad():
    want = model.features(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  module = resnet.get_backbone('resnet18')
  got = jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x)
  assert got.shape == (2, 512)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=1e-4)
