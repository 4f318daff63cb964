"""Tests of the synthetic shelf / rack generator: formats, boxes, determinism, coverage."""

import collections
import csv
import inspect
import pathlib
import re
import tarfile
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from data_builders import synthetic
from data_builders.synthetic import __main__ as cli
from data_builders.synthetic import products

TINY_SHELVES = dict(
  seed=3,
  photos_per_split={'train': 2, 'val': 1, 'test': 1},
  photo_size=(320, 240),
  boxes_per_photo=(50, 60),
  num_classes=12,
)
TINY_RACKS = dict(
  seed=3,
  num_photos=5,
  num_classes=10,
  photo_size=(320, 240),
  boxes_per_photo=(8, 14),
)
FILE_NAME_SAFE = re.compile(r'^[A-Za-z0-9_.-]+$')


def _files(root: pathlib.Path) -> dict[str, bytes]:
  return {
    p.relative_to(root).as_posix(): p.read_bytes()
    for p in sorted(root.rglob('*'))
    if p.is_file()
  }


def _read_csv(path: pathlib.Path) -> list[list[str]]:
  with open(path, newline='') as f:
    return list(csv.reader(f))


def _read_voc(path: pathlib.Path):
  root = ET.parse(path).getroot()
  objects = []
  for obj in root.findall('object'):
    box = obj.find('bndbox')
    objects.append(
      (
        obj.findtext('name'),
        *(int(box.findtext(k)) for k in ('xmin', 'ymin', 'xmax', 'ymax')),
        obj,
      )
    )
  return root, objects


@pytest.fixture(scope='module')
def tiny_shelves(tmp_path_factory):
  return synthetic.generate_shelves(
    tmp_path_factory.mktemp('shelves'), num_workers=0, **TINY_SHELVES
  )


@pytest.fixture(scope='module')
def tiny_racks(tmp_path_factory):
  return synthetic.generate_racks(
    tmp_path_factory.mktemp('racks'), num_workers=0, **TINY_RACKS
  )


@pytest.fixture(scope='module')
def default_set(tmp_path_factory):
  """The CLI's default set (shelves, racks, archive) and what it printed."""
  out = tmp_path_factory.mktemp('default')
  mp = pytest.MonkeyPatch()
  lines = []
  mp.setattr(
    'builtins.print', lambda *a, **k: lines.append(' '.join(map(str, a)))
  )
  try:
    assert cli.main(['--out', str(out), '--pack']) == 0
  finally:
    mp.undo()
  return out, '\n'.join(lines)


def test_shelf_layout_and_csv_format(tiny_shelves):
  assert tiny_shelves.name == 'SKU110K_fixed'
  assert sorted(p.name for p in tiny_shelves.iterdir()) == [
    'annotations',
    'images',
  ]
  images = sorted(p.name for p in (tiny_shelves / 'images').iterdir())
  assert images == ['test_0.jpg', 'train_0.jpg', 'train_1.jpg', 'val_0.jpg']
  assert sorted(p.name for p in (tiny_shelves / 'annotations').iterdir()) == [
    'annotations_test.csv',
    'annotations_train.csv',
    'annotations_val.csv',
  ]
  for split, count in TINY_SHELVES['photos_per_split'].items():
    rows = _read_csv(tiny_shelves / 'annotations' / f'annotations_{split}.csv')
    per_image = collections.Counter(row[0] for row in rows)
    assert sorted(per_image) == [f'{split}_{i}.jpg' for i in range(count)]
    for name, n in per_image.items():
      assert 50 <= n <= 60, (name, n)
    sizes = {}
    for row in rows:
      assert len(row) == 8, row
      name, x1, y1, x2, y2, cls, w, h = row
      assert cls == 'object'
      for value in (x1, y1, x2, y2, w, h):
        assert re.fullmatch(r'\d+', value), row  # plain non-negative integers
      x1, y1, x2, y2, w, h = map(int, (x1, y1, x2, y2, w, h))
      if name not in sizes:
        with Image.open(tiny_shelves / 'images' / name) as im:
          assert im.format == 'JPEG' and im.mode == 'RGB'
          sizes[name] = im.size
      assert (w, h) == sizes[name] == TINY_SHELVES['photo_size']
      assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, row
      assert x2 - x1 >= 3 and y2 - y1 >= 3, row


def test_shelf_boxes_hold_products_not_wall(tiny_shelves):
  """Boxes sit on products: pixels inside boxes vary far more than the wall strips between rows."""
  rows = _read_csv(tiny_shelves / 'annotations' / 'annotations_train.csv')
  img = np.asarray(
    Image.open(tiny_shelves / 'images' / 'train_0.jpg').convert('L'),
    dtype=np.float32,
  )
  covered = np.zeros(img.shape, bool)
  for name, x1, y1, x2, y2, *_ in rows:
    if name == 'train_0.jpg':
      covered[int(y1) : int(y2), int(x1) : int(x2)] = True
  assert covered.mean() > 0.3  # products fill much of the photo, like SKU110K
  edges = np.abs(np.diff(img, axis=1))
  assert edges[covered[:, 1:]].mean() > 1.5 * edges[~covered[:, 1:]].mean()


def test_same_seed_same_bytes_for_any_worker_count(tiny_shelves, tmp_path):
  again = synthetic.generate_shelves(
    tmp_path / 'again', num_workers=2, **TINY_SHELVES
  )
  assert _files(again) == _files(tiny_shelves)
  other = synthetic.generate_shelves(
    tmp_path / 'other', num_workers=0, **{**TINY_SHELVES, 'seed': 4}
  )
  reference, changed = _files(tiny_shelves), _files(other)
  assert reference.keys() == changed.keys()
  assert all(reference[k] != changed[k] for k in reference)


def test_regenerating_removes_stale_files(tmp_path):
  small = {**TINY_SHELVES, 'photo_size': (160, 120), 'boxes_per_photo': (5, 8)}
  synthetic.generate_shelves(
    tmp_path,
    num_workers=0,
    **{**small, 'photos_per_split': {'train': 3, 'val': 1}},
  )
  root = synthetic.generate_shelves(
    tmp_path, num_workers=0, **{**small, 'photos_per_split': {'train': 1}}
  )
  assert sorted(p.name for p in (root / 'images').iterdir()) == ['train_0.jpg']
  assert sorted(p.name for p in (root / 'annotations').iterdir()) == [
    'annotations_train.csv'
  ]


def test_rack_voc_xml(tiny_racks):
  assert tiny_racks.name == 'racks'
  stems = [f'rack_{i}' for i in range(TINY_RACKS['num_photos'])]
  assert sorted(p.name for p in tiny_racks.iterdir()) == sorted(
    [f'{s}.jpg' for s in stems] + [f'{s}.xml' for s in stems]
  )
  catalogue = {
    s.name
    for s in products.make_catalogue(
      TINY_RACKS['seed'], TINY_RACKS['num_classes']
    )
  }
  lo, hi = TINY_RACKS['boxes_per_photo']
  for stem in stems:
    root, objects = _read_voc(tiny_racks / f'{stem}.xml')
    assert root.tag == 'annotation'
    assert root.findtext('filename') == f'{stem}.jpg'
    assert root.find('folder') is not None
    with Image.open(tiny_racks / f'{stem}.jpg') as im:
      w, h = im.size
    assert (
      int(root.findtext('size/width')),
      int(root.findtext('size/height')),
    ) == (w, h)
    assert root.findtext('size/depth') == '3'
    assert lo <= len(objects) <= hi
    for name, x1, y1, x2, y2, obj in objects:
      assert name in catalogue and FILE_NAME_SAFE.match(name)
      assert obj.findtext('pose') == 'Unspecified'
      assert (
        obj.findtext('truncated') == '0' and obj.findtext('difficult') == '0'
      )
      assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


def test_every_rack_class_spans_several_photos(tiny_racks):
  photos_of = collections.defaultdict(set)
  for xml in tiny_racks.glob('rack_*.xml'):
    for name, *_ in _read_voc(xml)[1]:
      photos_of[name].add(xml.stem)
  assert len(photos_of) == TINY_RACKS['num_classes']
  assert min(len(p) for p in photos_of.values()) >= 2


def test_rack_crops_of_a_class_look_alike_and_families_more_so(tiny_racks):
  """Leave-one-out nearest neighbour on tiny raw-pixel crops: the class well above
  chance, the brand family more often still (variants of a family look alike),
  and crops are nearer to their family's other variants than to other families."""
  family = {
    s.name: s.family
    for s in products.make_catalogue(
      TINY_RACKS['seed'], TINY_RACKS['num_classes']
    )
  }
  feats, labels = [], []
  for xml in sorted(tiny_racks.glob('rack_*.xml')):
    img = Image.open(xml.with_suffix('.jpg')).convert('RGB')
    for name, x1, y1, x2, y2, _ in _read_voc(xml)[1]:
      crop = np.asarray(
        img.crop((x1, y1, x2, y2)).resize((8, 12), Image.BILINEAR),
        dtype=np.float32,
      ).ravel()
      feats.append((crop - crop.mean()) / (crop.std() + 1e-6))
      labels.append(name)
  feats, labels = np.stack(feats), np.array(labels)
  families = np.array([family[n] for n in labels])
  assert len(set(families)) >= 2
  dist = ((feats[:, None] - feats[None]) ** 2).sum(-1)
  np.fill_diagonal(dist, np.inf)
  nearest = dist.argmin(1)
  accuracy = (labels[nearest] == labels).mean()
  family_accuracy = (families[nearest] == families).mean()
  assert accuracy > 3 / TINY_RACKS['num_classes'], (
    accuracy
  )  # chance is ~1/num_classes
  assert family_accuracy > 0.7 and family_accuracy > accuracy + 0.1, (
    family_accuracy,
    accuracy,
  )
  same_class = labels[:, None] == labels[None]
  same_family = (families[:, None] == families[None]) & ~same_class
  other_family = families[:, None] != families[None]
  # Typical distances: same class < other variant of the family < other family.
  d_class, d_family, d_other = (
    np.median(dist[m & np.isfinite(dist)])
    for m in (same_class, same_family, other_family)
  )
  assert d_class < d_family < d_other, (d_class, d_family, d_other)


def test_pack_archive(tiny_shelves, tmp_path):
  tar_path = synthetic.pack_archive(tiny_shelves)
  assert tar_path == tiny_shelves.parent / 'SKU110K_fixed.tar.gz'
  with tarfile.open(tar_path, 'r:gz') as tar:
    members = {m.name: m for m in tar.getmembers()}
    contents = {
      name: tar.extractfile(m).read()
      for name, m in members.items()
      if m.isfile()
    }
  assert {n for n in members if not members[n].isfile()} == {
    'SKU110K_fixed',
    'SKU110K_fixed/images',
    'SKU110K_fixed/annotations',
  }
  expected = {f'SKU110K_fixed/{k}': v for k, v in _files(tiny_shelves).items()}
  assert contents == expected
  assert all(
    n.startswith(('SKU110K_fixed/images/', 'SKU110K_fixed/annotations/'))
    for n in contents
  )
  second = synthetic.pack_archive(tiny_shelves, tmp_path / 'copy.tar.gz')
  assert second.read_bytes() == tar_path.read_bytes()


def test_catalogue_is_a_function_of_seed_and_class_id():
  assert (
    inspect.signature(synthetic.generate_racks)
    .parameters['num_classes']
    .default
    >= 50
  )
  assert (
    inspect.signature(synthetic.generate_shelves)
    .parameters['num_classes']
    .default
    >= 50
  )
  catalogue = synthetic.make_catalogue(0, 60)
  names = [s.name for s in catalogue]
  assert len(set(names)) == 60 and all(FILE_NAME_SAFE.match(n) for n in names)
  assert (
    len({s.shape for s in catalogue}) >= 4
    and len({s.logo for s in catalogue}) >= 4
  )
  assert products.make_spec(0, 17) == catalogue[17]
  assert products.make_spec(1, 17) != catalogue[17]
  assert synthetic.make_catalogue(0, 5, class_offset=17)[0] == catalogue[17]
  first = np.asarray(products.draw_product(catalogue[5], 64))
  assert first.shape[0] == 64 and first.shape[2] == 4
  np.testing.assert_array_equal(
    first, np.asarray(products.draw_product(products.make_spec(0, 5), 64))
  )
  assert (
    first[..., 3].max() == 255 and first[..., :3].std() > 10
  )  # drawn, not blank


def test_brand_families():
  """Classes come in brand families that share everything but the variant's cues,
  and different brands often share their dominant colour."""
  catalogue = synthetic.make_catalogue(0, 60)
  by_family = collections.defaultdict(list)
  for spec in catalogue:
    by_family[spec.family].append(spec)
  ids = [s.class_id for s in catalogue]
  assert [s.family for s in catalogue] == sorted(
    s.family for s in catalogue
  )  # consecutive ids
  sizes = [len(v) for v in by_family.values()]
  lo, hi = products.FAMILY_SIZES
  assert (
    all(lo <= n <= hi for n in sizes[:-1]) and 1 <= sizes[-1] <= hi
  )  # the last may be cut off
  assert len(by_family) >= 8 and max(sizes) >= 4
  for members in by_family.values():
    for key in (
      'brand',
      'shape',
      'main_rgb',
      'logo',
      'logo_rgb',
      'pattern',
      'pattern_rgb',
      'text_rgb',
      'vertical_text',
      'variant_style',
    ):
      assert len({getattr(s, key) for s in members}) == 1, key
    assert len({s.variant for s in members}) == len(members)
    assert len({s.accent_rgb for s in members}) == len(members)
    assert all(
      s.name.startswith(f'p{s.class_id:03d}_{s.brand.lower()}_')
      for s in members
    )
    aspects = [s.aspect for s in members]
    assert (
      max(aspects) / min(aspects) < 1.15
    )  # sizes of a line differ only a little
  # Dominant colours come from a small shared palette: several brands per colour.
  palette = np.array([c for c, _ in products._PALETTE])  # pylint: disable=protected-access
  colour_of = [
    int(np.abs(palette - np.array(m[0].main_rgb)).sum(1).argmin())
    for m in by_family.values()
  ]
  assert max(collections.Counter(colour_of).values()) >= 2
  assert len(set(colour_of)) < len(by_family)
  # A catalogue drawn from an offset continues the same families.
  assert (
    synthetic.make_catalogue(0, 3, class_offset=ids[10])[0] == catalogue[10]
  )


def test_instances_vary_but_stay_close_to_their_class():
  spec_a = products.make_spec(0, 1)
  spec_b = next(
    s
    for s in synthetic.make_catalogue(0, 30)
    if s.family != spec_a.family and s.shape != spec_a.shape
  )

  def inst(spec, seed):
    img = products.render_instance(
      spec, 40, 64, np.random.default_rng(seed)
    ).convert('RGB')
    return np.asarray(img.resize((20, 32)), dtype=np.float32)

  a1, a2, b1 = inst(spec_a, 0), inst(spec_a, 1), inst(spec_b, 0)
  assert np.abs(a1 - a2).mean() > 0.5  # instances differ ...
  assert (
    np.abs(a1 - a2).mean() < np.abs(a1 - b1).mean()
  )  # ... less than classes do


def test_variants_of_a_family_differ_visibly():
  """Canonical artwork of two variants of one brand: mostly equal, but not identical."""
  catalogue = synthetic.make_catalogue(0, 60)
  for a, b in zip(catalogue, catalogue[1:]):
    if a.family != b.family:
      continue
    img_a = np.asarray(products.draw_product(a, 96), dtype=np.float32)
    img_b = np.asarray(products.draw_product(b, 96), dtype=np.float32)
    w = min(img_a.shape[1], img_b.shape[1])
    diff = np.abs(img_a[:, :w, :3] - img_b[:, :w, :3]).max(-1) > 40
    assert 0.005 < diff.mean() < 0.5, (a.name, b.name, diff.mean())


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (dict(photos_per_split={'training': 1}), 'unknown splits'),
    (
      dict(
        photos_per_split={'train': 1},
        photo_size=(64, 48),
        boxes_per_photo=(400, 400),
      ),
      'do not fit',
    ),
    (
      dict(photos_per_split={'train': 1}, boxes_per_photo=(10, 5)),
      'boxes_per_photo',
    ),
    (dict(photos_per_split={'train': 1}, photo_size=(16, 16)), 'photo_size'),
  ],
)
def test_shelf_bad_input_raises(tmp_path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    synthetic.generate_shelves(tmp_path, num_workers=0, **kwargs)


@pytest.mark.parametrize(
  'kwargs, match',
  [
    (dict(num_photos=1), 'num_photos'),
    (dict(num_photos=2, num_classes=30, boxes_per_photo=(5, 5)), 'cannot hold'),
  ],
)
def test_rack_bad_input_raises(tmp_path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    synthetic.generate_racks(
      tmp_path, num_workers=0, photo_size=(160, 120), **kwargs
    )


def test_default_set(default_set):
  out, printed = default_set
  root = out / 'SKU110K_fixed'
  for split, count in synthetic.DEFAULT_SHELF_PHOTOS.items():
    rows = _read_csv(root / 'annotations' / f'annotations_{split}.csv')
    per_image = collections.Counter(r[0] for r in rows)
    assert (
      len(per_image) == count
      and len(list((root / 'images').glob(f'{split}_*.jpg'))) == count
    )
    assert all(50 <= n <= 150 for n in per_image.values())
    assert f'{split}: {count} photos, {len(rows)} boxes' in printed
  with tarfile.open(out / 'SKU110K_fixed.tar.gz') as tar:
    names = tar.getnames()
  assert sum(n.startswith('SKU110K_fixed/images/') for n in names) == sum(
    synthetic.DEFAULT_SHELF_PHOTOS.values()
  )
  photos_of, crops = collections.defaultdict(set), collections.Counter()
  for xml in (out / 'racks').glob('rack_*.xml'):
    for name, *_ in _read_voc(xml)[1]:
      photos_of[name].add(xml.stem)
      crops[name] += 1
  assert len(photos_of) >= 50
  assert min(len(p) for p in photos_of.values()) >= 3
  assert 4 <= np.mean(list(crops.values())) <= 10
  assert f'{len(photos_of)} classes' in printed
