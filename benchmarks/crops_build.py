"""Crops/s of the `sku110k_crops` build against the thesis's sequential PIL loop.

Both run on the same synthetic SKU110K archive in the same process run:
  * sequential: open each photo, crop each box, save each crop as a JPEG file
    (PIL default quality 75, as the thesis's script); reads the extracted folder.
  * builder: `data_builders.build.build('sku110k_crops', ...)` from the tar.gz
    (streamed), all cores, array_record output, JPEG quality 95.

  python benchmarks/crops_build.py --photos 48 --photo_size 1600x1200 --configs native,128

Each measurement is repeated (`--repeats`, alternating) and the median is kept,
since the machine is shared. Then the input pipeline's images/s at 96 and
224 px (`benchmarks/input_pipeline.py`, same run; `--skip_pipeline` skips it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image


def sequential_pil_crops(root: Path, out_dir: Path) -> int:
  """The thesis way: one JPEG file per box, one photo after the other."""
  out_dir.mkdir(parents=True, exist_ok=True)
  count = 0
  for csv_path in sorted((root / 'annotations').glob('annotations_*.csv')):
    boxes_by_photo: dict[str, list[tuple[int, ...]]] = {}
    for line in csv_path.read_text().splitlines():
      name, x1, y1, x2, y2, *_ = line.split(',')
      boxes_by_photo.setdefault(name, []).append(
        (int(x1), int(y1), int(x2), int(y2))
      )
    for name, boxes in boxes_by_photo.items():
      photo = Image.open(root / 'images' / name).convert('RGB')
      for i, box in enumerate(boxes):
        photo.crop(box).save(out_dir / f'{Path(name).stem}_{i}.jpg')
        count += 1
  return count


def crops_build(args) -> list[dict]:
  from data_builders import build as build_lib
  from data_builders.synthetic import generate_shelves, pack_archive
  from data_builders.sku110k_crops import sku110k_crops_dataset_builder as sku

  work = Path(args.workdir or tempfile.mkdtemp(prefix='crops_bench_'))
  width, height = (int(v) for v in args.photo_size.split('x'))
  low, high = (int(v) for v in args.boxes.split(','))
  t0 = time.perf_counter()
  root = generate_shelves(
    work / 'gen',
    seed=0,
    photos_per_split={'train': args.photos},
    photo_size=(width, height),
    boxes_per_photo=(low, high),
  )
  manual = work / 'manual'
  manual.mkdir(exist_ok=True)
  tar_path = pack_archive(root, manual / sku.ARCHIVE_NAME)
  print(
    f'generated {args.photos} photos {width}x{height} ({tar_path.stat().st_size / 1e6:.0f} MB '
    f'archive) in {time.perf_counter() - t0:.0f} s; workers={args.workers or os.cpu_count()}'
  )

  rows = []
  sequential_times, builder_times = [], {c: [] for c in args.configs}
  crops_sequential = crops_builder = 0
  for repeat in range(args.repeats):
    out = work / f'sequential_{repeat}'
    t0 = time.perf_counter()
    crops_sequential = sequential_pil_crops(root, out)
    sequential_times.append(time.perf_counter() - t0)
    shutil.rmtree(out)
    for config in args.configs:
      data_dir = work / f'data_{repeat}_{config}'
      t0 = time.perf_counter()
      builder = build_lib.build(
        'sku110k_crops',
        config=config,
        manual_dir=manual,
        data_dir=data_dir,
        num_workers=args.workers,
      )
      builder_times[config].append(time.perf_counter() - t0)
      crops_builder = builder.info.splits['train'].num_examples
      shutil.rmtree(data_dir)
  base = crops_sequential / statistics.median(sequential_times)
  rows.append(
    dict(
      method='sequential PIL loop (q75 files)',
      config='native',
      crops=crops_sequential,
      seconds=statistics.median(sequential_times),
      crops_per_s=base,
      ratio=1.0,
    )
  )
  for config, times in builder_times.items():
    rate = crops_builder / statistics.median(times)
    rows.append(
      dict(
        method='sku110k_crops build (tar.gz, q95)',
        config=config,
        crops=crops_builder,
        seconds=statistics.median(times),
        crops_per_s=rate,
        ratio=rate / base,
      )
    )
  if not args.workdir:
    shutil.rmtree(work)
  return rows


def print_table(rows: list[dict]) -> None:
  print(
    f'\n{"method":36} {"config":>7} {"crops":>7} {"s":>7} {"crops/s":>8} {"x seq":>6}'
  )
  for r in rows:
    print(
      f'{r["method"]:36} {r["config"]:>7} {r["crops"]:>7} {r["seconds"]:>7.1f} '
      f'{r["crops_per_s"]:>8.0f} {r["ratio"]:>6.2f}'
    )


def main(argv: list[str] | None = None) -> list[dict]:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--photos', type=int, default=48)
  parser.add_argument('--photo_size', default='1600x1200', help='WxH')
  parser.add_argument(
    '--boxes', default='50,150', help='min,max boxes per photo'
  )
  parser.add_argument(
    '--configs', default='native,128', type=lambda s: s.split(',')
  )
  parser.add_argument(
    '--workers', type=int, default=None, help='default: all cores'
  )
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument(
    '--workdir', default=None, help='keep files here (default: temp, removed)'
  )
  parser.add_argument('--skip_pipeline', action='store_true')
  args = parser.parse_args(argv)
  rows = crops_build(args)
  print_table(rows)
  if not args.skip_pipeline:
    print(
      '\nInput pipeline (benchmarks/input_pipeline.py), images/s per process:'
    )
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import input_pipeline  # pylint: disable=g-import-not-at-top

    input_pipeline.main(
      [
        '--cases',
        '96:128,96:native,224:256,224:native',
        '--workers',
        '0,2',
        '--repeats',
        '3',
      ]
    )
  return rows


if __name__ == '__main__':
  import logging

  logging.basicConfig(level=logging.ERROR)
  main(sys.argv[1:])
