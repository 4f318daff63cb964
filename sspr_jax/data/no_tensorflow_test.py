"""The project imports, builds and reads data without ever importing TensorFlow.

TensorFlow is not installed here, so "not in sys.modules" alone could never
fail. The subprocess therefore pretends it is installed: a meta-path finder
answers for `tensorflow` with a module whose loading is recorded and refused.
Code that merely probes (`importlib.util.find_spec`) passes; code that would
import TensorFlow on a machine that has it fails the test.
"""

import os
import subprocess
import sys
import textwrap

_SCRIPT = textwrap.dedent("""
    import importlib, importlib.abc, importlib.machinery, pkgutil, sys, traceback

    attempts = []

    class _RefusingLoader(importlib.abc.Loader):
      def create_module(self, spec):
        return None
      def exec_module(self, module):
        attempts.append((module.__name__, ''.join(traceback.format_stack(limit=12))))
        raise ImportError('tensorflow is refused in no_tensorflow_test')

    class _PretendTensorflowIsInstalled(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'tensorflow':
          return importlib.machinery.ModuleSpec(name, _RefusingLoader())
        return None

    sys.meta_path.insert(0, _PretendTensorflowIsInstalled())

    import data_builders, sspr_jax
    modules = []
    for package in (sspr_jax, data_builders):
      for info in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):
        leaf = info.name.rsplit('.', 1)[-1]
        if leaf.endswith('_test') or leaf == '__main__':
          continue
        importlib.import_module(info.name)
        modules.append(info.name)

    from data_builders.build import build
    from data_builders.synthetic import generate_shelves
    from sspr_jax.data import pipeline

    data_dir, work_dir = sys.argv[1], sys.argv[2]
    shelves = generate_shelves(work_dir, seed=0,
                               photos_per_split={'train': 2, 'val': 1, 'test': 1},
                               photo_size=(320, 240), boxes_per_photo=(50, 60),
                               num_workers=0)
    build('sku110k_crops', config='128', manual_dir=shelves, data_dir=data_dir,
          num_workers=0)
    source = pipeline.open_source('sku110k_crops', split='val[:50%]',
                                  data_dir=data_dir, config='128')
    batch = next(iter(pipeline.make_loader(
        source, batch_size=4, image_size=16, seed=0, keys=('origin', 'box'),
        shard_index=0, shard_count=1)))
    assert batch['image'].shape == (4, 16, 16, 3), batch['image'].shape
    decoded = pipeline.open_source('sku110k_crops', split='test', data_dir=data_dir,
                                   config='128', decode_images=True)
    assert decoded[0]['image'].ndim == 3

    for name, stack in attempts:
      print(f'IMPORT OF {name} FROM:\\n{stack}')
    loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow')
    assert not attempts and not loaded, (len(attempts), loaded)
    print('OK', len(modules), 'modules')
    """)


def test_project_never_imports_tensorflow(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      '-c',
      _SCRIPT,
      str(tmp_path / 'tfds'),
      str(tmp_path / 'shelves'),
    ],
    env=dict(os.environ, JAX_PLATFORMS='cpu'),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
  assert 'OK' in result.stdout
