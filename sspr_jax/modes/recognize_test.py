"""The 'recognize' mode end to end on generated shelf photos (pixels baseline)."""

import csv
import json
import shutil

import pytest

from configs import recognize as recognize_config
from data_builders import synthetic
from sspr_jax import modes
from sspr_jax.core import config_check
from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.modes import recognize as recognize_mode

# 16 products of several brands; crops large enough for 16x16 pixels.
_RACKS = dict(num_classes=16, photo_size=(320, 240), boxes_per_photo=(30, 40))


@pytest.fixture(scope='module')
def shelves(tmp_path_factory):
  """A labeled gallery (6 rack photos) and a folder of 2 new shelf photos
  of the same products, with a corrupt photo, a box reaching outside its
  photo and a placeholder box."""
  root = tmp_path_factory.mktemp('recognize')
  gallery = synthetic.generate_racks(
    root / 'gallery', seed=0, num_photos=6, **_RACKS
  )
  # Photos 6 and 7 of a larger set: new renders of the same catalogue.
  more = synthetic.generate_racks(root / 'more', seed=0, num_photos=8, **_RACKS)
  photos = root / 'photos'
  photos.mkdir()
  for stem in ('rack_6', 'rack_7'):
    for ext in ('.jpg', '.xml'):
      shutil.copy(more / f'{stem}{ext}', photos / f'{stem}{ext}')
  xml = (photos / 'rack_7.xml').read_text()
  num_boxes = xml.count('<object>') + (photos / 'rack_6.xml').read_text().count(
    '<object>'
  )
  xml = xml.replace('<xmax>', '<xmax>9', 1)  # Box 0 reaches outside.
  (photos / 'rack_7.xml').write_text(xml)
  xml = (photos / 'rack_6.xml').read_text()
  first = xml.index('<name>') + len('<name>')
  xml = xml[:first] + '__UNKNOWN' + xml[xml.index('</name>', first) :]
  (photos / 'rack_6.xml').write_text(xml)
  (photos / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not a photo')
  (photos / 'broken.xml').write_text(xml.replace('rack_6.jpg', 'broken.jpg'))
  return {'gallery': gallery, 'photos': photos, 'num_boxes': num_boxes}


def _config(shelves, **recognize):
  config = recognize_config.get_config()
  values = dict(
    photos=str(shelves['photos']),
    backbone='pixels',
    gallery=str(shelves['gallery']),
  )
  config.recognize.update({**values, **recognize})
  config.evaluate.update(dict(image_size=32, batch_size=32))
  return config


def _run(config, workdir):
  ((_, settings),) = modes.parse(config)
  return recognize_mode.run(settings, str(workdir))


def test_recognize_writes_predictions_accuracy_and_reuses_the_gallery(
  shelves, tmp_path, monkeypatch, capsys
):
  embedded = []
  real_embed = embed_lib.embed

  def counting_embed(backbone, source, **kwargs):
    embedded.append(len(source))
    return real_embed(backbone, source, **kwargs)

  monkeypatch.setattr(embed_lib, 'embed', counting_embed)
  summary = _run(_config(shelves, method='prototype', top_k=3), tmp_path)
  out = tmp_path / 'recognize'
  boxes = shelves['num_boxes']
  assert embedded == [summary['gallery']['crops'], boxes]  # gallery, boxes
  assert not summary['gallery']['cache_reused']
  rows = json.loads((out / 'predictions.json').read_text())
  with open(out / 'predictions.csv', newline='') as f:
    table = list(csv.DictReader(f))
  assert len(rows) == len(table) == summary['boxes'] == boxes
  assert {r['photo'] for r in rows} == {'rack_6.jpg', 'rack_7.jpg'}
  assert all(len(r['top_k']) == 3 for r in rows)
  assert list(table[0])[:6] == ['photo', 'x1', 'y1', 'x2', 'y2', 'true_name']
  assert 'name_3' in table[0] and 'score_3' in table[0]
  # The box reaching outside is clipped to the 320 px wide photo.
  assert max(r['box'][2] for r in rows) == 320
  assert sorted(p.name for p in (out / 'annotated').iterdir()) == [
    'rack_6.jpg',
    'rack_7.jpg',
  ]
  saved = json.loads((out / 'summary.json').read_text())
  counts = saved['counts']
  assert counts['unreadable_photos'] == 1 and counts['clipped_boxes'] == 1
  assert saved['labeled_boxes'] == boxes - 1  # The placeholder has no name.
  assert [r['true_name'] for r in rows].count(None) == 1
  chance = 1 / saved['gallery']['classes']
  assert saved['top1_accuracy'] > 4 * chance, saved
  assert saved['topk_accuracy'] >= saved['top1_accuracy']
  report = (out / 'recognize.md').read_text()
  assert 'top-1 accuracy' in report and 'Most confused' in report
  printed = capsys.readouterr().out
  assert 'Wrote:' in printed and str(out / 'predictions.csv') in printed

  # A second run (kNN now) reuses the cached gallery: only the boxes embed.
  cache = summary['gallery']['cache']
  mtime = (tmp_path / cache).stat().st_mtime_ns
  embedded.clear()
  summary = _run(_config(shelves, method='knn'), tmp_path)
  assert embedded == [boxes]
  assert (
    summary['gallery']['cache_reused'] and summary['gallery']['cache'] == cache
  )
  assert (tmp_path / cache).stat().st_mtime_ns == mtime
  assert summary['top1_accuracy'] > 4 * chance, summary
  # Another input size is another cache entry.
  config = _config(shelves)
  config.evaluate.image_size = 24
  embedded.clear()
  summary = _run(config, tmp_path)
  assert not summary['gallery']['cache_reused'] and len(embedded) == 2
  # A truncated cache (a killed writer elsewhere, a full disk) is rebuilt.
  cache = tmp_path / summary['gallery']['cache']
  cache.write_bytes(cache.read_bytes()[:100])
  embedded.clear()
  summary = _run(config, tmp_path)
  assert not summary['gallery']['cache_reused'] and len(embedded) == 2
  embedded.clear()
  assert _run(config, tmp_path)['gallery']['cache_reused']
  assert embedded == [boxes]


@pytest.mark.parametrize(
  'key,value,message',
  [
    ('photos', '/no/such/folder', 'config.recognize.photos='),
    ('photos', '', 'config.recognize.photos='),
    ('method', 'svm', 'config.recognize.method='),
    ('top_k', 0, 'config.recognize.top_k='),
    ('knn_k', -1, 'config.recognize.knn_k='),
    ('backbone', 'pixel', 'config.recognize.backbone='),
    ('gallery', '/no/such/gallery', 'config.recognize.gallery='),
    ('gallery', '', "config.recognize.gallery='': required"),
  ],
)
def test_bad_config_values_fail_in_one_line(shelves, key, value, message):
  config = _config(shelves)
  config.recognize[key] = value
  with pytest.raises(config_check.ConfigError) as error:
    modes.parse(config)
  text = str(error.value)
  assert text.startswith(message) and '\n' not in text, text


def test_a_photo_without_boxes_is_listed_and_tiny_boxes_skipped(
  shelves, tmp_path
):
  photos = tmp_path / 'photos'
  shutil.copytree(shelves['photos'], photos)
  xml = (photos / 'rack_6.xml').read_text()
  objects = xml[xml.index('<object>') : xml.rindex('</object>') + 9]
  tiny = '<object><name>tiny</name><bndbox><xmin>10</xmin><ymin>10</ymin>'
  tiny += '<xmax>14</xmax><ymax>40</ymax></bndbox></object>'
  (photos / 'rack_6.xml').write_text(
    xml.replace('</object>', '</object>' + tiny, 1)
  )
  shutil.copy(photos / 'rack_6.jpg', photos / 'empty.jpg')
  (photos / 'empty.xml').write_text(
    xml.replace(objects, '').replace('rack_6.jpg', 'empty.jpg')
  )
  summary = _run(_config(shelves, photos=str(photos)), tmp_path / 'w')
  # The 4 px wide box is skipped (config.recognize.min_box_side=8).
  assert summary['counts']['skipped_small_boxes'] == 1
  assert summary['boxes'] == shelves['num_boxes']
  listed = summary['counts']['photos_without_boxes']
  assert [p.rsplit('/', 1)[-1] for p in listed] == [
    'empty.jpg'
  ]  # Not broken.jpg.
  report = (tmp_path / 'w' / 'recognize' / 'recognize.md').read_text()
  assert '1 photos had no box to match' in report and 'empty.jpg' in report
  saved = json.loads(
    (tmp_path / 'w' / 'recognize' / 'summary.json').read_text()
  )
  assert saved['counts']['photos_without_boxes'] == listed


def test_photos_without_a_usable_box_stop_before_the_gallery(
  shelves, tmp_path, monkeypatch
):
  photos = tmp_path / 'photos'
  photos.mkdir()
  shutil.copy(shelves['photos'] / 'broken.jpg', photos / 'broken.jpg')
  shutil.copy(shelves['photos'] / 'broken.xml', photos / 'broken.xml')
  monkeypatch.setattr(
    embed_lib, 'embed', lambda *a, **k: pytest.fail('embedded something')
  )
  with pytest.raises(config_check.ConfigError) as error:
    _run(_config(shelves, photos=str(photos)), tmp_path / 'w')
  text = str(error.value)
  assert text.startswith('config.recognize.photos=') and '\n' not in text
  assert "no box could be cut from its photos ({'boxes': " in text
  assert "'unreadable_photos': 1" in text


def test_a_file_as_backbone_is_named_as_a_file(shelves, tmp_path):
  weights = tmp_path / 'model.pth'
  weights.write_bytes(b'not a run')
  config = _config(shelves)
  config.recognize.backbone = str(weights)
  with pytest.raises(config_check.ConfigError) as error:
    modes.parse(config)
  text = str(error.value)
  assert f"'{weights}' is a file; give a pre-training workdir" in text
  assert 'does not exist' not in text and '\n' not in text


def test_photos_without_boxes_fail_naming_the_layouts(tmp_path, shelves):
  config = _config(shelves, photos=str(tmp_path))
  with pytest.raises(config_check.ConfigError, match='no Pascal VOC'):
    modes.parse(config)


def test_unnamed_boxes_of_sku110k_and_yolo_layouts(shelves, tmp_path):
  """CSV and YOLO boxes carry no product names: predictions, no accuracy."""
  sku = synthetic.generate_shelves(
    tmp_path / 'sku',
    seed=1,
    photos_per_split={'test': 2},
    photo_size=(320, 240),
    boxes_per_photo=(20, 25),
  )
  csv_rows = (sku / 'annotations' / 'annotations_test.csv').read_text()
  summary = _run(_config(shelves, photos=str(sku)), tmp_path / 'w1')
  assert summary['boxes'] == len(csv_rows.strip().splitlines())
  assert summary['labeled_boxes'] == 0 and summary['top1_accuracy'] is None
  assert len(list((tmp_path / 'w1/recognize/annotated').iterdir())) == 2
  assert 'No true names' in (tmp_path / 'w1/recognize/recognize.md').read_text()

  yolo = tmp_path / 'yolo'
  (yolo / 'images' / 'test').mkdir(parents=True)
  (yolo / 'labels' / 'test').mkdir(parents=True)
  shutil.copy(shelves['photos'] / 'rack_6.jpg', yolo / 'images/test/a.jpg')
  # Two boxes, the second reaching past the right edge (clipped).
  (yolo / 'labels/test/a.txt').write_text(
    '0 0.25 0.5 0.2 0.4\n0 0.95 0.5 0.2 0.4\n'
  )
  summary = _run(_config(shelves, photos=str(yolo)), tmp_path / 'w2')
  assert summary['boxes'] == 2 and summary['counts']['clipped_boxes'] == 1
  rows = json.loads((tmp_path / 'w2/recognize/predictions.json').read_text())
  assert rows[0]['box'] == [48, 72, 112, 168] and rows[1]['box'][2] == 320


def test_checkpoint_gallery_cache_sits_beside_the_checkpoint(
  shelves, tmp_path, monkeypatch, caplog
):
  run = tmp_path / 'run'
  for step in (3, 7):
    (run / 'checkpoints' / str(step) / 'meta').mkdir(parents=True)
    # The run was evaluated at 16 px: recognize embeds at its size.
    (run / 'checkpoints' / str(step) / 'meta' / 'metadata').write_text(
      json.dumps({'config': {'evaluate': {'image_size': 16}}})
    )
  loaded = []

  def load_backbone(run_dir, step):  # A tiny random ResNet as the checkpoint.
    loaded.append((run_dir, step))
    backbone = backbone_names.random_backbone('resnet_tiny', seed=step)
    backbone.step = step
    return backbone

  monkeypatch.setattr(backbone_names, 'load_backbone', load_backbone)
  config = _config(shelves, backbone=str(run))
  config.evaluate.image_size = 40  # Not the run's: not taken.
  summary = _run(config, tmp_path / 'w')
  assert loaded == [(str(run), 7)]  # The latest step.
  assert summary['image_size'] == 16
  cache = summary['gallery']['cache']
  assert cache.startswith(str(run / 'gallery_cache') + '/')
  summary = _run(config, tmp_path / 'w')
  assert summary['gallery']['cache_reused']
  config.recognize.backbone = str(run / 'checkpoints' / '3')
  summary = _run(config, tmp_path / 'w')
  assert loaded[-1] == (str(run), 3) and not summary['gallery']['cache_reused']
  assert len(list((run / 'gallery_cache').iterdir())) == 2
  # Another size when asked for, with a warning that names both.
  config.recognize.image_size = 24
  assert _run(config, tmp_path / 'w')['image_size'] == 24
  assert 'config.recognize.image_size=24, but the backbone run' in caplog.text
  assert 'was evaluated at 16 px' in caplog.text


def test_recognize_with_a_catalogue_split_as_the_gallery(shelves, tmp_path):
  """`recognize.gallery=grocery_store:iconic`: one packshot per product."""
  import pathlib  # pylint: disable=g-import-not-at-top

  clone = (
    pathlib.Path(__file__).parents[2] / 'data_builders/grocery_store/dummy_data'
  )
  config = _config(shelves, gallery='grocery_store:iconic', top_k=2)
  config.data.update(
    grocery_store_manual_dir=str(clone), data_dir=str(tmp_path / 'tfds')
  )
  summary = _run(config, tmp_path)
  assert summary['gallery']['crops'] == summary['gallery']['classes'] == 3
  rows = json.loads((tmp_path / 'recognize' / 'predictions.json').read_text())
  names = {'Golden-Delicious', 'Granny-Smith', 'Oatly-Oat-Milk'}
  assert len(rows) == shelves['num_boxes']
  assert all({t['name'] for t in r['top_k']} <= names for r in rows)
  assert all(len(r['top_k']) == 2 for r in rows)
