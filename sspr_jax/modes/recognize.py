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
  (`data_builders/`) and cut by `crops.crop_photo`: boxes reaching outside a
  photo are clipped, empty ones, duplicates and unreadable photos skipped,
  each case counted and logged with the file name. Placeholder names
  (`__UNKNOWN`, `__WRONG`) are recognised like any box but have no true name.
- `recognize.backbone`: a pre-training workdir (its latest checkpoint), a
  step folder `RUN/checkpoints/STEP`, or a baseline (`random`, `pixels:16`,
  ...: `embed.parse_baseline`); '' is WORKDIR's latest checkpoint.
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

import collections
import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import pathlib
import re
import time
import zipfile

import jax
import ml_collections
import numpy as np
import tqdm
from PIL import Image

from sspr_jax.core import config_check
from sspr_jax.core import results as results_lib
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.evaluate import evaluators as evaluators_lib
from sspr_jax.evaluate import recognize as recognize_lib
from sspr_jax.models import backbones
from sspr_jax.modes import evaluate as evaluate_mode
from sspr_jax.modes import outputs

log = logging.getLogger(__name__)

OUT_DIR = 'recognize'
CACHE_DIR = 'gallery_cache'
# Names of boxes that are not products (rack_crops' placeholder default).
PLACEHOLDER_PATTERN = '^__'
PHOTOS_HELP = (
  'a folder of shelf photos with Pascal VOC XML, the SKU110K layout '
  '(images/ + annotations/ CSVs, or SKU110K_fixed.tar.gz) or YOLO labels '
  '(images/{split}/ + labels/{split}/)'
)


@dataclasses.dataclass(frozen=True)
class Settings:
  photos: str  # absolute folder
  backbone: str  # as given ('' = WORKDIR's latest checkpoint)
  baseline: tuple[str, str | None] | None  # parsed, when a baseline
  checkpoint: tuple[str, int] | None  # (run dir, step), when given
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


def photo_source(folder: str | os.PathLike):
  """The `crops.CropSource` of the annotated photos in `folder`.

  Pascal VOC files (anywhere under it) are read by `rack_crops` with every
  name kept; otherwise the SKU110K / YOLO layouts by `sku110k_crops`.

  Raises:
    FileNotFoundError: no known layout; ValueError: a malformed annotation
      file (named, with its line or object).
  """
  from data_builders.rack_crops import rack_crops_dataset_builder as rack  # pylint: disable=g-import-not-at-top
  from data_builders.sku110k_crops import sku110k_crops_dataset_builder as sku  # pylint: disable=g-import-not-at-top

  folder = pathlib.Path(folder)
  if (folder / 'Annotations').is_dir() or next(folder.rglob('*.xml'), None):
    return rack.find_source(folder, placeholder_pattern='')
  try:
    return sku.find_source(folder)
  except FileNotFoundError:
    raise FileNotFoundError(
      f'{folder}: no Pascal VOC *.xml, no SKU110K images/ + annotations/ '
      f'(or {sku.ARCHIVE_NAME}) and no YOLO images/{{split}}/ + '
      'labels/{split}/'
    ) from None


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
  config_check.wrap('recognize.photos', value, lambda _: photo_source(path))
  return path


def _parse_backbone(config):
  """(given, baseline, checkpoint) of `config.recognize.backbone`."""
  value = config_check.get(config, 'recognize.backbone', '')
  if not isinstance(value, str):
    config_check.fail('recognize.backbone', value, 'must be a string.')
  if not value:
    return value, None, None
  path = os.path.expanduser(value)
  if os.path.exists(path):
    run_dir, steps = config_check.wrap(
      'recognize.backbone',
      value,
      lambda p: embed_lib.run_and_steps(p, False),
    )
    return value, None, (run_dir, steps[-1])
  try:
    return value, embed_lib.parse_baseline(value), None
  except ValueError:
    config_check.fail(
      'recognize.backbone',
      value,
      'no such checkpoint folder and not a baseline; valid: a pre-training '
      f'workdir, RUN/checkpoints/STEP, or {embed_lib.BASELINES_HELP}.',
    )


def _parse_scoring(config) -> evaluators_lib.Settings:
  if 'evaluate' in config:
    return evaluate_mode.parse_scoring(config)
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
  backbone, baseline, checkpoint = _parse_backbone(config)
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
    baseline=baseline,
    checkpoint=checkpoint,
    gallery_data=evaluate_mode.gallery_data(
      config, gallery, key='recognize.gallery'
    ),
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
  if settings.baseline is not None:
    kind, arg = settings.baseline
    backbone = embed_lib.baseline_backbone(
      kind, arg, settings.architecture, settings.seed
    )
    identity = {'baseline': settings.backbone}
    if kind == 'random':
      identity.update(architecture=settings.architecture, seed=settings.seed)
    return backbone, identity, os.path.join(workdir, OUT_DIR, CACHE_DIR)
  if settings.checkpoint is not None:
    run_dir, step = settings.checkpoint
  else:
    run_dir, steps = embed_lib.run_and_steps(workdir, False)
    step = steps[-1]
  log.info('Loading %s, step %d.', run_dir, step)
  backbone = embed_lib.load_backbone(run_dir, step)
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
  backbone: embed_lib.Backbone,
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
  start = time.perf_counter()
  emb = gallery.embeddings(
    backbone.module, backbone.variables, backbone.normalize, backbone.name
  )
  log.info(
    '%s: embedded %d gallery crops in %.1f s.',
    backbone.name,
    len(emb['label']),
    time.perf_counter() - start,
  )
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


# --------------------------------------------------------------------------
# The boxes of the photos.


@dataclasses.dataclass
class Photo:
  name: str  # file name, as in the CSV
  origin: str
  path: str | None
  data: bytes | None  # the photo's bytes when it came from an archive
  boxes: list  # kept boxes (clipped x1, y1, x2, y2)
  true: list  # true name per kept box, or None


def _example(record: bytes):
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top

  feature = tf_example_pb2.Example.FromString(record).features.feature
  label = feature['label_name'].bytes_list.value
  return (
    feature['image'].bytes_list.value[0],
    [int(v) for v in feature['box'].int64_list.value],
    label[0].decode() if label else None,
  )


def read_photos(
  folder: str, min_side: int = 1
) -> tuple[list[Photo], list[bytes], dict]:
  """(photos, crop images in photo order, counts) of the annotated photos.

  Bad input as `crops.crop_photo` handles it for a build (clipped and
  skipped boxes, missing and unreadable photos), counted and logged with
  the file name: the first few of each kind one line each, then a total.
  """
  from data_builders import crops  # pylint: disable=g-import-not-at-top

  source = photo_source(folder)
  # Native crops, as the gallery's builds; a box of a few pixels says
  # nothing once enlarged to the input size (`skipped_small_boxes`).
  options = crops.CropOptions(min_side=min_side)
  placeholder = re.compile(PLACEHOLDER_PATTERN)
  counts = collections.Counter(dict.fromkeys(crops.COUNT_KEYS, 0))
  logged = collections.Counter()
  photos, images, names = [], [], collections.Counter()
  without_boxes = []
  tasks = list(source.tasks())
  bar = tqdm.tqdm(tasks, desc='reading photos', unit='photo', leave=False)
  for task in bar:
    label_ids = (
      {n: i for i, n in enumerate(sorted(set(task.labels)))}
      if task.labels is not None
      else None
    )
    result = crops.crop_photo(task, options, label_ids)
    counts.update(result.counts)
    for kind, message in result.events:
      logged[kind] += 1
      if logged[kind] <= crops.MAX_LOGGED_BOX_EVENTS:
        log.warning('recognize: %s', message)
    where = task.path or task.source
    if not result.records:
      unread = result.counts.get('unreadable_photos', 0) + result.counts.get(
        'missing_photos', 0
      )
      if not unread:  # Listed in the summary, not dropped silently.
        without_boxes.append(str(where))
      continue
    name = os.path.basename(where.rsplit(':', 1)[-1])
    names[name] += 1
    if names[name] > 1:  # The same file name in two splits.
      name = f'{task.split}_{name}'
    photo = Photo(name, task.origin, task.path, task.data, [], [])
    for record in result.records:
      image, box, true = _example(record)
      images.append(image)
      photo.boxes.append(box)
      photo.true.append(
        None if true is None or placeholder.search(true) else true
      )
    photos.append(photo)
  for kind, n in logged.items():
    if n > crops.MAX_LOGGED_BOX_EVENTS:
      log.warning('recognize: %d %s in all (%s).', n, kind, folder)
  for kind, extra in source.extra_counts.items():
    counts.update(extra)
  counts = dict(counts)
  counts['photos_without_boxes'] = without_boxes
  return photos, images, counts


class _Crops:
  """The crops as a random-access source for `embed.embed`."""

  def __init__(self, images):
    self.images = images
    self.name = 'photo boxes'

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    return {'image': self.images[i], 'index': i}


# --------------------------------------------------------------------------
# The mode.


def run(settings: Settings, workdir: str) -> dict:
  # The photos first: a folder with no usable box stops before the gallery
  # is embedded.
  log.info('Reading the boxes of the photos in %s.', settings.photos)
  photos, images, counts = read_photos(settings.photos, settings.min_box_side)
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
  gallery = evaluate_mode.open_gallery(
    settings.gallery_data, workdir, settings.scoring
  )
  class_names = gallery.class_names
  gallery_emb, cache_path, reused = gallery_embeddings(
    gallery, backbone, identity, cache_dir
  )
  start = time.perf_counter()
  query = embed_lib.embed(
    backbone,
    _Crops(images),
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
    print(report_text(summary), flush=True)
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
    f.write(report_text(summary) + '\n')


def _percent(x) -> str:
  return 'n/a' if x is None else f'{100 * x:.1f} %'


def report_text(summary: dict) -> str:
  """recognize.md: what was matched, counts, accuracy, confused pairs."""
  g, c = summary['gallery'], summary['counts']
  lines = [
    '# Recognition',
    '',
    f'{summary["boxes"]} boxes on {summary["photos"]} photos matched by '
    f'{summary["backbone"]} ({summary["method"]}) against a gallery of '
    f'{g["crops"]} crops of {g["classes"]} products'
    f'{" (cached embeddings)" if g["cache_reused"] else ""}.',
  ]
  ignored = ('photos', 'boxes', 'crops', 'unannotated_photos')
  without = c.get('photos_without_boxes', [])
  bad = {
    k: v
    for k, v in c.items()
    if v and k not in ignored and k != 'photos_without_boxes'
  }
  if bad:
    lines += [
      '',
      'Input: ' + ', '.join(f'{k} {v}' for k, v in sorted(bad.items())),
    ]
  if without:
    shown = ', '.join(os.path.basename(p) for p in without[:10])
    more = f' and {len(without) - 10} more' if len(without) > 10 else ''
    lines += [
      '',
      f'{len(without)} photos had no box to match (no annotation, or every '
      f'box skipped): {shown}{more} (all in summary.json, '
      '`counts.photos_without_boxes`).',
    ]
  if summary['labeled_boxes']:
    k = summary['k']
    lines += [
      '',
      f'| boxes with a true name | top-1 accuracy | top-{k} accuracy |',
      '|---|---|---|',
      f'| {summary["labeled_boxes"]} | {_percent(summary["top1_accuracy"])} '
      f'| {_percent(summary["topk_accuracy"])} |',
    ]
    if summary['unknown_to_gallery']:
      lines += [
        '',
        f'{summary["unknown_to_gallery"]} boxes name a product the gallery '
        'does not hold (counted as errors).',
      ]
    if summary['most_confused']:
      lines += [
        '',
        'Most confused (true -> predicted top-1):',
        '',
        '| true | predicted | boxes |',
        '|---|---|---|',
      ] + [
        f'| {p["true"]} | {p["predicted"]} | {p["count"]} |'
        for p in summary['most_confused']
      ]
  else:
    lines += ['', 'No true names on the photos: no accuracy.']
  return '\n'.join(lines)


def written(workdir: str) -> list[tuple[str, str, str]]:
  out = os.path.join(workdir, OUT_DIR)
  return [
    ('predictions.csv', os.path.join(out, 'predictions.csv'), 'one row a box'),
    ('predictions.json', os.path.join(out, 'predictions.json'), ''),
    ('annotated/', os.path.join(out, 'annotated'), 'photos with names'),
    ('summary.json', os.path.join(out, 'summary.json'), ''),
    ('recognize.md', os.path.join(out, 'recognize.md'), ''),
  ]
