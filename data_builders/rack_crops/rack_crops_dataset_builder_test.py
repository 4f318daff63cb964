"""Tests of `rack_crops` on tiny generated Pascal VOC racks and class folders."""

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_builders import build as build_lib
from data_builders.rack_crops import rack_crops_dataset_builder as rack

# Photo id -> (width, height), [(class, box)].
RACKS = {
  'rack_0': (
    (60, 40),
    [
      ('milk', (0, 0, 20, 30)),
      ('cola', (20, 5, 45, 40)),
      ('milk', (45, 0, 60, 20)),
    ],
  ),
  'rack_1': ((50, 50), [('bread', (5, 5, 30, 30)), ('cola', (30, 10, 50, 50))]),
}


def photo_pixels(width: int, height: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def voc_xml(filename: str | None, size, objects) -> str:
  parts = ['<annotation>', '<folder>racks</folder>']
  if filename is not None:
    parts.append(f'<filename>{filename}</filename>')
  parts.append(
    f'<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>'
  )
  for name, (x1, y1, x2, y2) in objects:
    parts.append(
      f'<object><name>{name}</name><pose>Unspecified</pose><bndbox><xmin>{x1}</xmin>'
      f'<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>'
    )
  return '\n'.join(parts + ['</annotation>'])


def make_flat(root: Path, racks=RACKS, photo_ext='.png') -> Path:
  """Flat folder of `rack_<i><ext>` + `rack_<i>.xml` (PNG photos: exact pixels)."""
  root.mkdir(parents=True)
  for seed, (origin, (size, objects)) in enumerate(racks.items()):
    Image.fromarray(photo_pixels(*size, seed)).save(
      root / f'{origin}{photo_ext}'
    )
    (root / f'{origin}.xml').write_text(
      voc_xml(f'{origin}{photo_ext}', size, objects)
    )
  return root


def read_all(builder) -> dict[str, dict]:
  source = builder.as_data_source(split='train')
  return {
    ex['crop_id'].decode(): ex for ex in (source[i] for i in range(len(source)))
  }


def build(manual_dir, data_dir, **options):
  options.setdefault('encoding', 'png')
  return build_lib.build(
    'rack_crops',
    manual_dir=manual_dir,
    data_dir=data_dir,
    num_workers=0,
    **options,
  )


def test_voc_flat_folder_gives_labelled_exact_crops(tmp_path):
  manual = make_flat(tmp_path / 'racks')
  builder = build(manual, tmp_path / 'data')
  names = builder.info.features['label'].names
  assert names == ['bread', 'cola', 'milk']
  crops = read_all(builder)
  assert len(crops) == 5
  for seed, (origin, (size, objects)) in enumerate(RACKS.items()):
    pixels = photo_pixels(*size, seed)
    for k, (name, (x1, y1, x2, y2)) in enumerate(objects):
      ex = crops[f'{origin}_{k}']
      assert names[ex['label']] == name == ex['label_name'].decode()
      assert ex['origin'].decode() == origin and ex['crop_index'] == k
      assert ex['box'].tolist() == [x1, y1, x2, y2]
      np.testing.assert_array_equal(ex['image'], pixels[y1:y2, x1:x2])
  # Label names and counts come back from the directory alone, without TF.
  reloaded = tfds.builder_from_directory(builder.data_dir)
  assert reloaded.info.features['label'].names == names
  assert reloaded.info.metadata['counts']['train']['crops'] == 5
  assert 'tensorflow' not in sys.modules


def test_voc_layout_resolves_filename_and_falls_back_to_the_xml_stem(tmp_path):
  manual = tmp_path / 'voc'
  (manual / 'Annotations').mkdir(parents=True)
  (manual / 'JPEGImages').mkdir()
  (size, objects) = RACKS['rack_0']
  pixels = photo_pixels(*size, 0)
  # <filename> names the photo; the XML has another stem.
  Image.fromarray(pixels).save(manual / 'JPEGImages' / 'IMG_7.png')
  (manual / 'Annotations' / 'a.xml').write_text(
    voc_xml('IMG_7.png', size, objects)
  )
  # <filename> missing: resolved as <xml stem>.<ext>.
  Image.fromarray(pixels).save(manual / 'JPEGImages' / 'b.png')
  (manual / 'Annotations' / 'b.xml').write_text(
    voc_xml(None, size, objects[:1])
  )
  crops = read_all(build(manual, tmp_path / 'data'))
  assert set(crops) == {'IMG_7_0', 'IMG_7_1', 'IMG_7_2', 'b_0'}
  assert crops['b_0']['origin'] == b'b'


def test_class_folders_keep_origin_and_whole_crop(tmp_path):
  manual = tmp_path / 'classes'
  shapes = {
    ('milk', 'rack_0_3'): (12, 20),
    ('milk', 'rack_1_0'): (8, 9),
    ('cola', 'rack_0_1'): (15, 10),
    ('cola', 'loose'): (5, 6),
  }
  for (label, stem), (w, h) in shapes.items():
    (manual / label).mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo_pixels(w, h, w)).save(manual / label / f'{stem}.png')
  builder = build(manual, tmp_path / 'data')
  crops = read_all(builder)
  assert set(crops) == {'rack_0_3', 'rack_1_0', 'rack_0_1', 'loose_0'}
  assert (
    crops['rack_0_3']['origin'] == b'rack_0'
    and crops['rack_0_3']['crop_index'] == 3
  )
  assert crops['loose_0']['origin'] == b'loose'
  assert crops['rack_0_3']['box'].tolist() == [0, 0, 12, 20]
  np.testing.assert_array_equal(
    crops['rack_1_0']['image'], photo_pixels(8, 9, 8)
  )
  assert builder.info.features['label'].names == ['cola', 'milk']
  assert (
    crops['rack_0_1']['label_name'] == b'cola'
    and crops['rack_0_1']['label'] == 0
  )


def test_bad_boxes_and_photos_are_counted(tmp_path):
  racks = {
    'rack_0': (
      (60, 40),
      [
        ('milk', (-3, 0, 20, 30)),
        ('cola', (30, 5, 20, 40)),
        ('cola', (10, 10, 10, 20)),
      ],
    ),
    'rack_1': ((50, 50), [('bread', (5, 5, 30, 30))]),
    'rack_2': ((50, 50), [('bread', (5, 5, 30, 30))]),
  }
  manual = make_flat(tmp_path / 'racks', racks, photo_ext='.jpg')
  (manual / 'rack_1.jpg').write_bytes(b'\xff\xd8\xff garbage')
  (manual / 'rack_2.jpg').unlink()
  builder = build(manual, tmp_path / 'data', encoding='jpeg')
  counts = builder.info.metadata['counts']['train']
  assert counts['clipped_boxes'] == 1 and counts['skipped_empty_boxes'] == 2
  assert counts['unreadable_photos'] == 1 and counts['missing_photos'] == 1
  crops = read_all(builder)
  assert set(crops) == {'rack_0_0'} and crops['rack_0_0']['box'].tolist() == [
    0,
    0,
    20,
    30,
  ]
  # Classes only seen in skipped boxes still get a label id.
  assert builder.info.features['label'].names == ['bread', 'cola', 'milk']


@pytest.mark.parametrize(
  'text, message',
  [
    ('<annotation><object><name>a</name>', 'malformed XML'),
    (
      '<annotation><object><name>a</name><bndbox><xmin>1</xmin><ymin>x</ymin>'
      '<xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>',
      r'<ymin> must be a number',
    ),
    ('<annotation><object><bndbox/></object></annotation>', 'missing <name>'),
  ],
)
def test_malformed_xml_names_the_file(tmp_path, text, message):
  manual = make_flat(tmp_path / 'racks')
  (manual / 'rack_1.xml').write_text(text)
  with pytest.raises(ValueError, match=message) as error:
    build(manual, tmp_path / 'data')
  assert str(manual / 'rack_1.xml') in str(error.value)


def test_parse_voc_rounds_float_coordinates(tmp_path):
  path = tmp_path / 'x.xml'
  path.write_text(voc_xml('x.jpg', (10, 10), [('a', (1.0, 2.4, 7.6, 9))]))
  annotation = rack.parse_voc(path)
  assert annotation.boxes.tolist() == [[1, 2, 8, 9]] and annotation.size == (
    10,
    10,
  )


def test_synthetic_racks_give_one_labelled_crop_per_object(tmp_path):
  from data_builders.synthetic import generate_racks

  racks = generate_racks(
    tmp_path / 'gen',
    num_photos=3,
    num_classes=5,
    photo_size=(320, 240),
    boxes_per_photo=(8, 12),
    num_workers=0,
  )
  objects = {
    f'{xml.stem}_{k}': a
    for xml in sorted(racks.glob('*.xml'))
    for k, a in enumerate(rack.parse_voc(xml).labels)
  }
  builder = build(racks, tmp_path / 'data', encoding='jpeg')
  crops = read_all(builder)
  assert set(crops) == set(objects)
  names = builder.info.features['label'].names
  assert names == sorted(set(objects.values()))
  assert all(names[ex['label']] == objects[cid] for cid, ex in crops.items())


# As the thesis's annotations: placeholder boxes among the products.
PLACEHOLDER_RACKS = {
  'rack_0': (
    (60, 40),
    [
      ('milk', (0, 0, 20, 30)),
      ('__UNKNOWN', (20, 5, 45, 40)),
      ('cola', (45, 0, 60, 20)),
    ],
  ),
  'rack_1': (
    (50, 50),
    [
      ('__WRONG', (5, 5, 30, 30)),
      ('cola', (30, 10, 50, 50)),
      ('__UNKNOWN', (0, 30, 20, 50)),
    ],
  ),
}


def test_placeholder_boxes_are_left_out_and_counted(tmp_path, caplog):
  manual = make_flat(tmp_path / 'racks', PLACEHOLDER_RACKS)
  with caplog.at_level('WARNING'):
    builder = build(manual, tmp_path / 'data')
  # The default is the standard configs' (no custom config name).
  for config in ('native', '256', '128'):
    made = build_lib.make_config(
      'rack_crops', config, placeholder_pattern='^__'
    )
    assert made.name == config and made.placeholder_pattern == '^__'
  assert builder.info.features['label'].names == ['cola', 'milk']
  crops = read_all(builder)
  # Kept boxes keep their annotation index.
  assert set(crops) == {'rack_0_0', 'rack_0_2', 'rack_1_1'}
  assert crops['rack_0_2']['label_name'] == b'cola'
  np.testing.assert_array_equal(
    crops['rack_1_1']['image'], photo_pixels(50, 50, 1)[10:50, 30:50]
  )
  counts = builder.info.metadata['counts']['train']
  assert counts['skipped_placeholder_boxes'] == 3
  assert counts['boxes'] == 6 and counts['crops'] == 3
  assert builder.info.metadata['options']['placeholder_pattern'] == '^__'
  assert '__UNKNOWN x2, __WRONG x1' in caplog.text
  assert "rack_1.xml: object 0 [5, 5, 30, 30]: placeholder '__WRONG'" in (
    caplog.text
  )
  assert 'skipped_placeholder_boxes: 3' in build_lib.summary(builder)


def test_custom_placeholder_pattern_makes_its_own_config(tmp_path):
  manual = make_flat(tmp_path / 'racks', PLACEHOLDER_RACKS)
  builder = build(manual, tmp_path / 'data', placeholder_pattern='^(__W|milk)')
  # A regex is no directory name: the config is named with its hash.
  assert builder.builder_config.name == (
    'native-encoding_png-placeholder_pattern_b3c3af9d'
  )
  assert builder.info.features['label'].names == ['__UNKNOWN', 'cola']
  counts = builder.info.metadata['counts']['train']
  assert counts['skipped_placeholder_boxes'] == 2 and counts['crops'] == 4
  # '' keeps every name.
  keep_all = build(manual, tmp_path / 'data', placeholder_pattern='')
  assert keep_all.builder_config.name.endswith('-placeholder_pattern_none')
  assert keep_all.info.metadata['counts']['train']['crops'] == 6
  with pytest.raises(ValueError, match='not a regular expression'):
    build(manual, tmp_path / 'data', placeholder_pattern='(')
  with pytest.raises(ValueError, match='unknown options'):
    build_lib.make_config('sku110k_crops', placeholder_pattern='x')


def test_cli_placeholder_pattern(tmp_path, capsys):
  manual = make_flat(tmp_path / 'racks', PLACEHOLDER_RACKS)
  argv = ['rack_crops', '--manual_dir', str(manual), '--data_dir']
  argv += [str(tmp_path / 'data'), '--num_workers', '0', '--encoding', 'png']
  build_lib.main(argv + ['--placeholder_pattern', '^__UNKNOWN$'])
  out = capsys.readouterr().out
  assert 'skipped_placeholder_boxes: 2' in out and '4 crops' in out


def test_placeholder_class_folders_are_left_out(tmp_path):
  manual = tmp_path / 'classes'
  for label, stem in [
    ('milk', 'rack_0_0'),
    ('__UNKNOWN', 'rack_0_1'),
    ('__UNKNOWN', 'rack_1_4'),
    ('cola', 'rack_1_0'),
  ]:
    (manual / label).mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo_pixels(8, 8, 0)).save(manual / label / f'{stem}.png')
  builder = build(manual, tmp_path / 'data')
  assert builder.info.features['label'].names == ['cola', 'milk']
  assert set(read_all(builder)) == {'rack_0_0', 'rack_1_0'}
  counts = builder.info.metadata['counts']['train']
  assert counts['skipped_placeholder_boxes'] == 2 and counts['boxes'] == 4
