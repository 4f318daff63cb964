"""Gallery embeddings cached on disk, keyed by the gallery's, the
backbone's and the input size's identity; an unreadable cache is rebuilt."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile

import jax
import numpy as np

from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import evaluators as evaluators_lib

log = logging.getLogger(__name__)


def gallery_identity(gallery: evaluators_lib.Gallery) -> dict:
  """What makes a built gallery itself: its folder, version and contents."""
  info = gallery.source.dataset_info
  data_dir = str(info.data_dir)
  digest = hashlib.sha1()
  for name in ('dataset_info.json', 'features.json'):
    path = os.path.join(data_dir, name)
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        digest.update(f.read())
  return {
    'data_dir': data_dir,
    'version': str(info.version),
    'num_crops': len(gallery.source),
    'class_names': hashlib.sha1(
      '\n'.join(gallery.class_names).encode()
    ).hexdigest(),
    'info': digest.hexdigest(),
  }


def cache_key(gallery: dict, backbone: dict, image_size: int) -> str:
  text = json.dumps(
    {'gallery': gallery, 'backbone': backbone, 'image_size': image_size},
    sort_keys=True,
  )
  return hashlib.sha1(text.encode()).hexdigest()[:16]


def gallery_embeddings(
  gallery: evaluators_lib.Gallery,
  backbone: backbone_names.Backbone,
  identity: dict,
  cache_dir: str,
) -> tuple[dict, str, bool]:
  """(embeddings, cache path, reused): from the cache, else embedded once."""
  key = cache_key(
    gallery_identity(gallery), identity, gallery.settings.image_size
  )
  path = os.path.join(cache_dir, f'{key}.npz')
  if os.path.isfile(path):
    try:
      with np.load(path) as f:
        emb = {k: f[k] for k in ('features_normalized', 'label')}
      if len(emb['label']) == len(gallery.source):
        log.info('Gallery embeddings reused from %s.', path)
        return emb, path, True
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
      # Truncated or foreign: embedded again and replaced, never fatal.
      log.warning(
        'Rebuilding the unreadable gallery cache %s (%s: %s).',
        path,
        type(e).__name__,
        e,
      )
  emb = gallery.embed(backbone)
  emb = {k: emb[k] for k in ('features_normalized', 'label', 'crop_id')}
  if jax.process_index() == 0:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f'{path}.tmp.npz'
    np.savez(
      tmp,
      **emb,
      class_names=np.asarray(gallery.class_names),
      identity=json.dumps(identity),
    )
    os.replace(tmp, path)
  return emb, path, False
