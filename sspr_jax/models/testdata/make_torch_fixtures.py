"""Regenerates the torch checkpoint fixtures of ``torch_import_test.py``.

    pip install torch==2.13.0
    python sspr_jax/models/testdata/make_torch_fixtures.py

Writes ``tiny_state_dict.pth`` (zip format), ``tiny_state_dict_legacy.pth``
(legacy format, as the EfficientNet-Lite0 weights) and
``tiny_state_dict.npz`` (the expected arrays), and ``tiny_wrapped.pth`` (a
``{'epoch', 'arch', 'state_dict'}`` checkpoint with ``module.`` keys). The tests read them without
torch. The tensors cover the layouts a reader must handle: contiguous, a
transposed (non-contiguous) weight, views sharing one storage at offsets, a
0-d int64 ``num_batches_tracked``, float16 / bfloat16 / bool / int32 and an
empty tensor.
"""
import collections
import os

import ml_dtypes
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
  rng = np.random.default_rng(1234)
  conv = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
  dense = rng.standard_normal((5, 6)).astype(np.float32)
  shared = rng.standard_normal(20).astype(np.float32)
  half = rng.standard_normal((2, 3)).astype(np.float16)
  bf16 = rng.standard_normal(4).astype(np.float32)
  ints = rng.integers(-1000, 1000, (3, 2)).astype(np.int32)
  mask = rng.random(5) > 0.5

  base = torch.from_numpy(shared)
  sd = collections.OrderedDict()
  sd['conv.weight'] = torch.from_numpy(conv)
  # Stored as the transpose of a contiguous (6, 5) array: strides (1, 5).
  sd['fc.weight'] = torch.from_numpy(np.ascontiguousarray(dense.T)).t()
  sd['bn.running_mean'] = base[2:6]            # offset 2 in a shared storage
  sd['bn.running_var'] = base[10:20].view(2, 5)[:, ::2]  # offset + stride 2
  sd['bn.num_batches_tracked'] = torch.tensor(7, dtype=torch.int64)
  sd['half'] = torch.from_numpy(half)
  sd['bf16'] = torch.from_numpy(bf16).to(torch.bfloat16)
  sd['ints'] = torch.from_numpy(ints)
  sd['mask'] = torch.from_numpy(mask)
  sd['empty'] = torch.zeros((0, 3))
  assert not sd['fc.weight'].is_contiguous()
  assert sd['bn.running_var'].storage_offset() == 10

  expected = {k: (v.float().numpy().astype(ml_dtypes.bfloat16).view(np.uint16)
                  if v.dtype == torch.bfloat16 else v.numpy())
              for k, v in sd.items()}
  torch.save(sd, os.path.join(HERE, 'tiny_state_dict.pth'))
  torch.save(sd, os.path.join(HERE, 'tiny_state_dict_legacy.pth'),
             _use_new_zipfile_serialization=False)
  np.savez(os.path.join(HERE, 'tiny_state_dict.npz'), **expected)
  # A training checkpoint around a DataParallel state_dict.
  torch.save({'epoch': 3, 'arch': 'tiny', 'state_dict': collections.OrderedDict(
      [('module.conv.weight', sd['conv.weight']),
       ('module.bn.running_mean', sd['bn.running_mean'])])},
             os.path.join(HERE, 'tiny_wrapped.pth'))
  for name in ('tiny_state_dict.pth', 'tiny_state_dict_legacy.pth',
               'tiny_state_dict.npz', 'tiny_wrapped.pth'):
    print(name, os.path.getsize(os.path.join(HERE, name)), 'bytes')


if __name__ == '__main__':
  main()
