"""`embed`: dataset order, padding, and the same features on 1 device, 2
devices and 2 processes."""

import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tqdm

from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.testing import REPO, child_env

# A list source: 32 x 32 photos stay as they are under the loader's
# shorter-side resize + centre crop to 32, so features can be recomputed.
_SOURCE = textwrap.dedent("""
    import numpy as np
    def source(n=11):
      rng = np.random.default_rng(0)
      return [{'image': rng.integers(0, 256, (32, 32, 3), np.uint8),
               'label': i % 4, 'origin': b'photo_%d' % (i // 3),
               'crop_id': ('crop_%d' % i).encode() * (1 + i % 3)}
              for i in range(n)]
""")


def _source(n=11):
  scope = {}
  exec(_SOURCE, scope)  # pylint: disable=exec-used
  return scope['source'](n)


def test_embed_is_the_backbone_in_dataset_order():
  source = _source()
  backbone = backbone_names.random_backbone('resnet_tiny', seed=1)
  emb = embed_lib.embed(backbone, source, image_size=32, batch_size=4)
  images = np.stack([ex['image'] for ex in source])
  x = (images / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array(
    [0.229, 0.224, 0.225]
  )
  want = backbone.module.apply(
    backbone.variables, x.astype(np.float32), train=False
  )
  np.testing.assert_allclose(
    emb['features'], np.asarray(want), rtol=1e-4, atol=1e-5
  )
  np.testing.assert_array_equal(emb['label'], [ex['label'] for ex in source])
  assert list(emb['crop_id']) == [ex['crop_id'] for ex in source]
  np.testing.assert_allclose(
    np.linalg.norm(emb['features_normalized'], axis=1), 1.0, rtol=1e-5
  )


def test_embed_bar_counts_finished_batches(monkeypatch):
  """The bar advances only over batches whose features are ready, and
  dispatch runs at most `IN_FLIGHT` batches ahead of it."""
  dispatched, counts = [], []
  features_fn = embed_lib._features_fn

  def recording_features_fn(*args):
    features = features_fn(*args)

    def call(*a):
      dispatched.append(features(*a))
      return dispatched[-1]

    return call

  class Bar(tqdm.tqdm):
    def update(self, n=1):
      super().update(n)
      assert all(x.is_ready() for x in dispatched[: self.n])
      counts.append((self.n, len(dispatched)))

  monkeypatch.setattr(embed_lib, '_features_fn', recording_features_fn)
  monkeypatch.setattr(embed_lib.tqdm, 'tqdm', Bar)
  backbone = backbone_names.random_backbone('resnet_tiny', seed=1)
  emb = embed_lib.embed(backbone, _source(), image_size=32, batch_size=2)
  assert len(emb['features']) == 11
  assert [n for n, _ in counts] == [1, 2, 3, 4, 5, 6]  # ceil(11 / 2)
  assert all(0 <= d - n <= embed_lib.IN_FLIGHT for n, d in counts)
  assert counts[0] == (1, 1 + embed_lib.IN_FLIGHT)


def test_embed_empty_dataset_is_a_clear_error():
  with pytest.raises(ValueError, match='empty dataset'):
    embed_lib.embed(
      backbone_names.random_backbone('resnet_tiny'), [], image_size=32
    )


_COMPARE = _SOURCE + textwrap.dedent("""
    import sys
    import jax
    from sspr_jax.evaluate import backbone_names
    from sspr_jax.evaluate import embed as embed_lib
    backbone = backbone_names.random_backbone('resnet_tiny', seed=1)
    emb = embed_lib.embed(backbone, source(), image_size=32, batch_size=3)
    np.savez(sys.argv[1], **emb)
    print('devices', jax.device_count(), 'processes', jax.process_count())
""")


def _run(args, env, **kwargs):
  return subprocess.Popen(
    [sys.executable, '-c', *args],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    **kwargs,
  )


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_devices_and_two_processes_match_one_device(tmp_path):
  base = child_env()
  one = _run([_COMPARE, str(tmp_path / 'one.npz')], base)
  two_devices = _run(
    [_COMPARE, str(tmp_path / 'two_devices.npz')],
    child_env(XLA_FLAGS='--xla_force_host_platform_device_count=2'),
  )
  port = _free_port()
  distributed = textwrap.dedent(f"""
      import sys, jax
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
      jax.distributed.initialize('127.0.0.1:{port}', 2, int(sys.argv[2]))
  """)
  processes = [
    _run(
      [distributed + _COMPARE, str(tmp_path / f'process{i}.npz'), str(i)], base
    )
    for i in range(2)
  ]
  outputs = {}
  for name, proc in [
    ('one', one),
    ('two_devices', two_devices),
    ('process0', processes[0]),
    ('process1', processes[1]),
  ]:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, f'{name}: {stderr[-3000:]}'
    outputs[name] = stdout
  assert 'devices 2 processes 1' in outputs['two_devices']
  assert 'devices 2 processes 2' in outputs['process0']
  want = np.load(tmp_path / 'one.npz')
  for name in ('two_devices', 'process0', 'process1'):
    got = np.load(tmp_path / f'{name}.npz')
    assert set(got.files) == set(want.files)
    np.testing.assert_allclose(
      got['features'], want['features'], rtol=1e-5, atol=1e-6, err_msg=name
    )
    for key in ('label', 'origin', 'crop_id'):  # Text and ints, in order.
      np.testing.assert_array_equal(got[key], want[key], err_msg=name)
  assert len(want['features']) == 11
