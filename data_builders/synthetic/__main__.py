"""CLI: python -m data_builders.synthetic --out DIR [--seed 0] [--pack]."""

from __future__ import annotations

import argparse
import collections
import csv
import os
import pathlib
import sys
import time
import xml.etree.ElementTree as ET

from data_builders.synthetic import generate


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m data_builders.synthetic',
    description='Writes DIR/SKU110K_fixed (SKU110K layout) and DIR/racks (VOC-labeled racks).',
  )
  parser.add_argument(
    '--out', required=True, type=pathlib.Path, help='output folder'
  )
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--num-classes', type=int, default=60)
  parser.add_argument(
    '--pack', action='store_true', help='also write DIR/SKU110K_fixed.tar.gz'
  )
  parser.add_argument(
    '--workers',
    type=int,
    default=min(os.cpu_count() or 1, 4),
    help='processes rendering photos (output does not depend on it)',
  )
  args = parser.parse_args(argv)

  start = time.perf_counter()
  root = generate.generate_shelves(
    args.out,
    seed=args.seed,
    num_classes=args.num_classes,
    num_workers=args.workers,
  )
  racks = generate.generate_racks(
    args.out,
    seed=args.seed,
    num_classes=args.num_classes,
    num_workers=args.workers,
  )
  for split in generate.SPLITS:
    with open(
      root / 'annotations' / f'annotations_{split}.csv', newline=''
    ) as f:
      per_image = collections.Counter(row[0] for row in csv.reader(f))
    print(
      f'{root}: {split}: {len(per_image)} photos, {sum(per_image.values())} boxes'
    )
  names = collections.Counter()
  xmls = sorted(racks.glob('rack_*.xml'))
  for path in xmls:
    names.update(
      obj.findtext('name') for obj in ET.parse(path).getroot().iter('object')
    )
  print(
    f'{racks}: {len(xmls)} photos, {sum(names.values())} boxes, {len(names)} classes'
  )
  if args.pack:
    print(f'packed {generate.pack_archive(root)}')
  print(f'done in {time.perf_counter() - start:.1f} s')
  return 0


if __name__ == '__main__':
  sys.exit(main())
