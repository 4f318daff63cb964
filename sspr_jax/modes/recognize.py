"""Mode 'recognize': name the products on new shelf photos with a backbone.

What a retailer does with a pre-trained backbone: cut every annotated box
out of new shelf photos, embed the crops, and match them to a labeled
gallery of known products.

Config (`configs/recognize.py`):
- `recognize.photos`: a folder of shelf photos with boxes: Pascal VOC XML
  beside the photos (or `Annotations/` + `JPEGImages/`; the `<name>`s are
  the true products), the SKU110K layout (`images/` + `annotations/` CSVs,
  or `SKU110K_fixed.tar.gz`), or YOLO labels (`images/{split}/`,
  `labels/{split}/`). The boxes are read by the dataset builders' parsers
  (`data_builders/`) and cut by `crops.cut_boxes`: boxes reaching outside a
  photo are clipped, empty ones, duplicates and unreadable photos skipped,
  each case counted and logged with the file name. Placeholder names
  (`__UNKNOWN`, `__WRONG`) are recognised like any box but have no true name.
- `recognize.backbone`: a pre-training workdir (its latest checkpoint), a
  step folder `RUN/checkpoints/STEP`, or a baseline (`random`, `pixels:16`,
  ...: the grammar of `evaluate/backbone_names.py`); '' is WORKDIR's latest
  checkpoint.
- `recognize.gallery`: the labeled products, as `config.dataset` of the
  evaluate mode ('synthetic', a folder of labeled rack photos, a TFDS data
  dir with `rack_crops/`; '' is `config.data`'s racks).
- `recognize.method`: 'prototype' (nearest class prototype, cosine) or
  'knn' (`recognize.knn_k` nearest gallery crops vote, similarity-weighted);
  `recognize.top_k` names per box. Input size and batch:
  `config.evaluate.image_size` / `batch_size`.

The gallery's embeddings are cached beside the checkpoint
(`RUN/gallery_cache/<key>.npz`; for a baseline or a read-only run in
WORKDIR/recognize/gallery_cache), keyed by the gallery's identity, the
backbone (run, step) and the input size; a second run reuses them.

Writes WORKDIR/recognize/: predictions.csv and predictions.json (one row a
box: photo, box, top-k names and scores, true name), annotated/<photo>.jpg,
summary.json and recognize.md (counts, and with true names top-1 / top-k
accuracy and the most confused pairs).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import time

import jax
import ml_collections
import tqdm
from PIL import Image

from sspr_jax.core import config_check
from sspr_jax.core import results as results_lib
from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.evaluate import evaluators as evaluators_lib
from sspr_jax.evaluate import gallery_cache
from sspr_jax.evaluate import recognize as recognize_lib
from sspr_jax.evaluate import shelf_photos
from sspr_jax.models import backbones
from sspr_jax.modes import common
from sspr_jax.modes import outputs

log = logging.getLogger(__name__)

OUT_DIR = 'recognize'
CACHE_DIR = 'gallery_cache'
PHOTOS_HELP = (
  'a folder of shelf photos with Pascal VOC XML, the SKU110K layout '
  '(images/ + annotations/ CSVs, or SKU110K_fixed.tar.gz) or YOLO labels '
  '(images/{split}/ + labels/{split}/)'
)


@dataclasses.dataclass(frozen=True)
class Settings:
  photos: str  # absolute folder
  backbone: backbone_names.Name | None  # None: WORKDIR's latest checkpoint
  gallery_data: ml_collections.ConfigDict
  scoring: evaluators_lib.Settings  # image_size, batch_size
  method: str
  top_k: int
  knn_k: int
  architecture: dict  # of the random baseline
  seed: int = 0
  min_box_side: int = 8  # smaller boxes are skipped and counted
  image_size: int = 0  # recognize.image_size; 0: the backbone run's
  config: ml_collections.ConfigDict | None = None  # recorded with the result


def _parse_photos(config) -> str:
  value = config_check.get(config, 'recognize.photos', '')
  if not isinstance(value, str) or not value:
    config_check.fail('recognize.photos', value, f'needs {PHOTOS_HELP}.')
  path = os.path.abspath(os.path.expanduser(value))
  if not os.path.isdir(path):
    config_check.fail(
      'recognize.photos', value, f'no such folder (needs {PHOTOS_HELP}).'
    )
  # The layout is found (and VOC files parsed) before anything runs.
  config_check.wrap(
    'recognize.photos', value, lambda _: shelf_photos.photo_source(path)
  )
  return path


def _parse_backbone(config) -> backbone_names.Name | None:
  """`config.recognize.backbone` parsed; None: WORKDIR's latest checkpoint."""
  value = config_check.get(config, 'recognize.backbone', '')
  if not isinstance(value, str):
    config_check.fail('recognize.backbone', value, 'must be a string.')
  if not value:
    return None
  return config_check.wrap('recognize.backbone', value, backbone_names.parse)


def _parse_scoring(config) -> evaluators_lib.Settings:
  if 'evaluate' in config:
    return common.parse_scoring(config)
  return evaluators_lib.Settings()


def parse(config: ml_collections.ConfigDict) -> Settings:
  if config_check.get(config, 'recognize') is config_check.MISSING:
    raise config_check.ConfigError(
      'The recognize mode needs a `recognize` section (configs/recognize.py).'
    )
  method = config_check.name(
    config, 'recognize.method', recognize_lib.METHODS, 'matching method'
  )
  method = 'prototype' if method is config_check.MISSING else method
  top_k = config_check.integer(config, 'recognize.top_k')
  knn_k = config_check.integer(config, 'recognize.knn_k')
  min_side = config_check.integer(config, 'recognize.min_box_side')
  image_size = config_check.integer(config, 'recognize.image_size', minimum=0)
  backbone = _parse_backbone(config)
  gallery = config_check.get(config, 'recognize.gallery', '')
  if not isinstance(gallery, str):
    config_check.fail('recognize.gallery', gallery, 'must be a string.')
  if not gallery:  # The embedded demo's products would name real photos.
    config_check.fail(
      'recognize.gallery',
      gallery,
      'required: the labeled products to match against (a TFDS data dir '
      'with rack_crops/, a folder of labeled rack photos, DATASET:SPLIT such '
      "as grocery_store:iconic, or 'synthetic' for the embedded demo).",
    )
  model = config.get('model', {})
  return Settings(
    photos=_parse_photos(config),
    backbone=backbone,
    gallery_data=common.gallery_data(config, gallery, key='recognize.gallery'),
    scoring=_parse_scoring(config),
    method=method,
    top_k=5 if top_k is config_check.MISSING else top_k,
    knn_k=20 if knn_k is config_check.MISSING else knn_k,
    min_box_side=8 if min_side is config_check.MISSING else min_side,
    image_size=0 if image_size is config_check.MISSING else image_size,
    architecture=backbones.architecture(model),
    seed=config.get('seed', 0),
    config=config,
  )


# --------------------------------------------------------------------------
# The backbone and its cached gallery embeddings.


def _backbone(settings: Settings, workdir: str):
  """(Backbone, identity dict, cache folder)."""
  name = settings.backbone
  if name is None:
    name = backbone_names.parse(workdir, kinds=('run',))
  if name.kind != 'run':
    backbone = backbone_names.load(
      name, architecture=settings.architecture, seed=settings.seed
    )
    identity = {'baseline': name.text}
    if name.kind == 'random':
      identity.update(architecture=settings.architecture, seed=settings.seed)
    return backbone, identity, os.path.join(workdir, OUT_DIR, CACHE_DIR)
  run_dir, step = name.run, name.steps[-1]
  log.info('Loading %s, step %d.', run_dir, step)
  backbone = backbone_names.load(name)
  meta = os.path.join(run_dir, 'checkpoints', str(step), 'meta', 'metadata')
  identity = {
    'run': run_dir,
    'step': step,
    'saved': os.stat(meta).st_mtime_ns if os.path.exists(meta) else None,
  }
  with open(meta) as f:
    saved = json.load(f).get('config', {})
  run_size = saved.get('evaluate', {}).get('image_size')
  identity['evaluation_size'] = run_size
  cache = os.path.join(run_dir, CACHE_DIR)
  if not _writable(cache):
    cache = os.path.join(workdir, OUT_DIR, CACHE_DIR)
  return backbone, identity, cache


def input_size(settings: Settings, identity: dict) -> int:
  """The size the boxes and the gallery are embedded at: the backbone run's
  evaluation size (`config.evaluate.image_size` of its config), unless
  `recognize.image_size` names one; another size than the run's is a
  warning naming both. A baseline takes `evaluate.image_size`."""
  run_size = identity.get('evaluation_size')
  given = settings.image_size
  if not run_size:
    return given or settings.scoring.image_size
  if given and given != run_size:
    log.warning(
      'Embedding at config.recognize.image_size=%d, but the backbone run %s '
      'was evaluated at %d px: accuracy may drop.',
      given,
      identity.get('run'),
      run_size,
    )
  return given or run_size


def _writable(folder: str) -> bool:
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError:
    return False
  return os.access(folder, os.W_OK)


# --------------------------------------------------------------------------
# The mode.


def run(settings: Settings, workdir: str) -> dict:
  # The photos first: a folder with no usable box stops before the gallery
  # is embedded.
  log.info('Reading the boxes of the photos in %s.', settings.photos)
  photos, images, counts = shelf_photos.read_photos(
    settings.photos, settings.min_box_side
  )
  if not images:
    bad = {k: v for k, v in counts.items() if v and k != 'photos_without_boxes'}
    raise config_check.ConfigError(
      f'config.recognize.photos={settings.photos!r}: no box could be cut '
      f'from its photos ({bad}).'
    )
  backbone, identity, cache_dir = _backbone(settings, workdir)
  settings = dataclasses.replace(
    settings,
    scoring=dataclasses.replace(
      settings.scoring, image_size=input_size(settings, identity)
    ),
  )
  identity.pop('evaluation_size', None)
  gallery = common.open_gallery(
    settings.gallery_data, workdir, settings.scoring
  )
  class_names = gallery.class_names
  gallery_emb, cache_path, reused = gallery_cache.gallery_embeddings(
    gallery, backbone, identity, cache_dir
  )
  start = time.perf_counter()
  query = embed_lib.embed(
    backbone,
    shelf_photos.Crops(images),
    image_size=settings.scoring.image_size,
    batch_size=settings.scoring.batch_size,
    keys=('index',),
  )
  log.info(
    '%s: embedded %d boxes of %d photos in %.1f s.',
    backbone.name,
    len(images),
    len(photos),
    time.perf_counter() - start,
  )
  ids, scores = recognize_lib.match(
    query['features_normalized'],
    gallery_emb['features_normalized'],
    gallery_emb['label'],
    len(class_names),
    method=settings.method,
    top_k=settings.top_k,
    knn_k=settings.knn_k,
  )
  rows, i = [], 0
  for photo in photos:
    for box, true in zip(photo.boxes, photo.true):
      rows.append(
        {
          'photo': photo.name,
          'box': box,
          'true_name': true,
          'top_k': [
            {'name': class_names[c], 'score': round(float(s), 6)}
            for c, s in zip(ids[i], scores[i])
          ],
        }
      )
      i += 1
  truth = [r['true_name'] for r in rows]
  summary = recognize_lib.accuracy_summary(
    truth, [[p['name'] for p in r['top_k']] for r in rows]
  )
  known = set(class_names)
  summary.update(
    backbone=backbone.name,
    method=settings.method,
    image_size=settings.scoring.image_size,
    photos=len(photos),
    boxes=len(rows),
    unknown_to_gallery=sum(1 for t in truth if t and t not in known),
    gallery={
      'crops': int(len(gallery_emb['label'])),
      'classes': len(class_names),
      'cache': cache_path,
      'cache_reused': reused,
    },
    counts=counts,
  )
  if jax.process_index() == 0:
    # Staged, then moved into place whole (core.results); earlier runs'
    # annotated photos that this run has not drawn go.
    with results_lib.Staging(
      workdir,
      'recognize',
      settings.config,
      owned=(os.path.join(OUT_DIR, 'annotated'),),
    ) as stage:
      write(stage.path(OUT_DIR), rows, photos, summary, settings.top_k)
      results_lib.fault_point('recognize:written')
    print(recognize_lib.report_text(summary), flush=True)
  outputs.print_wrote(
    written(workdir)
    + [('gallery cache', cache_path, 'reused' if reused else 'new')]
  )
  return summary


def write(out_dir, rows, photos, summary, top_k) -> None:
  """predictions.csv/.json, annotated/*.jpg, summary.json, recognize.md."""
  os.makedirs(os.path.join(out_dir, 'annotated'), exist_ok=True)
  with open(os.path.join(out_dir, 'predictions.json'), 'w') as f:
    json.dump(rows, f, indent=1)
  with open(os.path.join(out_dir, 'predictions.csv'), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(
      ['photo', 'x1', 'y1', 'x2', 'y2', 'true_name']
      + [f'{w}_{j + 1}' for j in range(top_k) for w in ('name', 'score')]
    )
    for r in rows:
      ranked = [v for p in r['top_k'] for v in (p['name'], p['score'])]
      ranked += [''] * (2 * top_k - len(ranked))
      writer.writerow([r['photo'], *r['box'], r['true_name'] or ''] + ranked)
  i = 0
  for photo in tqdm.tqdm(photos, desc='annotating', unit='photo', leave=False):
    mine = rows[i : i + len(photo.boxes)]
    i += len(photo.boxes)
    try:
      image = Image.open(
        io.BytesIO(photo.data) if photo.data is not None else photo.path
      )
      image.load()
    except (OSError, ValueError) as e:  # Cut once already: rare.
      log.warning('recognize: cannot draw %s again (%s).', photo.name, e)
      continue
    annotated = recognize_lib.annotate(
      image,
      [r['box'] for r in mine],
      [r['top_k'][0]['name'] for r in mine],
      [r['true_name'] for r in mine],
    )
    stem = os.path.splitext(photo.name)[0]
    annotated.save(
      os.path.join(out_dir, 'annotated', f'{stem}.jpg'), quality=90
    )
  with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  with open(os.path.join(out_dir, 'recognize.md'), 'w') as f:
    f.write(recognize_lib.report_text(summary) + '\n')


def written(workdir: str) -> list[tuple[str, str, str]]:
  out = os.path.join(workdir, OUT_DIR)
  return [
    ('predictions.csv', os.path.join(out, 'predictions.csv'), 'one row a box'),
    ('predictions.json', os.path.join(out, 'predictions.json'), ''),
    ('annotated/', os.path.join(out, 'annotated'), 'photos with names'),
    ('summary.json', os.path.join(out, 'summary.json'), ''),
    ('recognize.md', os.path.join(out, 'recognize.md'), ''),
  ]
