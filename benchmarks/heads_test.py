"""Smoke test of benchmarks/heads.py: tiny synthetic embeddings, one
architecture, every section (presets, GridSearchCV part, same fits)."""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import heads  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position


def test_random_init_like_embeddings_are_badly_conditioned():
  x, labels, origins = heads.random_init_like(200, 64, 20)
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  cos = (x @ x.T)[np.triu_indices(len(x), 1)]
  assert cos.min() > 0.95 and len(np.unique(labels)) == 20
  assert len(np.unique(origins)) > 20  # several photos a class
  assert heads.parse_hidden('32;128,64') == ((32,), (128, 64))
  assert heads.parse_hidden('') is None


def test_smoke_run(tmp_path, capsys):
  out = tmp_path / 'heads.json'
  heads.main(
    [
      '--smoke',
      '--hidden',
      '8',
      '--presets',
      'thesis',
      '--same_fits',
      '8',
      '--json',
      str(out),
    ]
  )
  r = json.loads(out.read_text())
  thesis = r['presets']['thesis']
  assert thesis['grid_points'] == 2 and thesis['num_capped'] == 0
  assert 0 < thesis['test_accuracy'] <= 1 and thesis['seconds'] > 0
  assert r['sklearn']['fits_timed'] == 2 and r['sklearn']['fits_total'] == 11
  assert r['sklearn']['seconds'] > 0 and r['speedup'] > 0
  blas = r['sklearn_blas']  # JSON keys are strings.
  assert str(blas['threads']) in blas['probe_ms_per_iteration']
  (same,) = r['same_fits']
  assert [f['alpha'] for f in same['ours']['fits']] == [0.01, 0.1]
  assert all(f['n_iter'] > 0 for f in same['sklearn']['fits'])
  printed = capsys.readouterr().out
  assert '| sspr_jax, thesis preset |' in printed
  assert 'scikit-learn GridSearchCV' in printed and 'same fits (8,)' in printed
