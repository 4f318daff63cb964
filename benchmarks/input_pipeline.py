"""Images/s of the host input pipeline (read, decode, resize, batch) per process.

  python benchmarks/input_pipeline.py [--data_dir DIR] [--cases 96:128,224:native]
      [--workers 0,2] [--batch_size 64] [--batches 20] [--repeats 1]

Reads `sku110k_crops` from --data_dir; configs missing there are built first
from synthetic shelf photos (photo size and box count like real SKU110K
photos, so native crops have realistic sizes). A case `S:CONFIG` loads the
stored config CONFIG ('128', '256', 'native') and resizes to S px. Start-up
(first batch, incl. spawning workers) is timed apart from the steady rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sspr_jax.data import pipeline

DATASET = 'sku110k_crops'
DEFAULT_CASES = '96:128,96:native,224:256,224:native'


def ensure_built(
  data_dir: Path,
  configs: set[str],
  *,
  photos: int,
  photo_size: tuple[int, int],
  boxes: tuple[int, int],
) -> None:
  """Builds the missing `sku110k_crops` configs from synthetic shelves."""
  missing = set()
  for config in configs:
    try:
      pipeline.find_dataset_dir(DATASET, data_dir=data_dir, config=config)
    except FileNotFoundError:
      missing.add(config)
  if not missing:
    return
  # Imported here: reading a built set needs no builder code.
  from data_builders.build import build  # pylint: disable=g-import-not-at-top
  from data_builders.synthetic import generate_shelves  # pylint: disable=g-import-not-at-top

  shelves_dir = data_dir / 'synthetic_shelves'
  print(
    f'Generating {photos} synthetic shelf photos {photo_size} in '
    f'{shelves_dir} and building {sorted(missing)} ...',
    flush=True,
  )
  shelves = generate_shelves(
    shelves_dir,
    seed=0,
    photos_per_split={'train': photos, 'val': 1, 'test': 1},
    photo_size=photo_size,
    boxes_per_photo=boxes,
  )
  for config in sorted(missing):
    build(DATASET, config=config, manual_dir=shelves, data_dir=data_dir)


def crop_stats(source) -> str:
  """Mean stored crop size and encoded bytes, from a sample."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top

  sample = [source[i] for i in range(0, len(source), max(1, len(source) // 50))]
  sizes = np.array([Image.open(io.BytesIO(e['image'])).size for e in sample])
  nbytes = np.mean([len(e['image']) for e in sample])
  return (
    f'{sizes[:, 0].mean():.0f}x{sizes[:, 1].mean():.0f} px, '
    f'{nbytes / 1024:.1f} KiB'
  )


def _cpu_seconds() -> float:
  """CPU time of this process and its live children (grain workers)."""
  import psutil  # pylint: disable=g-import-not-at-top  # tfds dependency.

  me = psutil.Process()
  total = sum(me.cpu_times()[:2])
  for child in me.children(recursive=True):
    try:
      total += sum(child.cpu_times()[:2])
    except psutil.NoSuchProcess:
      pass
  return total


def measure(
  source,
  *,
  image_size: int,
  workers: int,
  batch_size: int,
  batches: int,
  read_threads: int | None,
) -> tuple[float, float, float]:
  """Returns (start-up s, steady images/s, CPU ms per image) of one loader.

  CPU ms per image counts all threads and worker processes, so it stays
  meaningful when other programs compete for the cores (img/s does not).
  """
  loader = pipeline.make_loader(
    source,
    batch_size=batch_size,
    image_size=image_size,
    seed=0,
    worker_count=workers,
    read_threads=read_threads,
    shard_index=0,
    shard_count=1,
  )
  start = time.perf_counter()
  iterator = iter(loader)
  next(iterator)
  next(iterator)  # Second batch: workers past their first element too.
  startup = time.perf_counter() - start
  cpu_start, start = _cpu_seconds(), time.perf_counter()
  for _ in range(batches):
    batch = next(iterator)
    assert batch['image'].shape == (batch_size, image_size, image_size, 3)
  images = batches * batch_size
  rate = images / (time.perf_counter() - start)
  cpu_ms = (_cpu_seconds() - cpu_start) / images * 1e3
  if hasattr(iterator, 'close'):
    iterator.close()
  del batch
  return startup, rate, cpu_ms


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument(
    '--data_dir',
    type=Path,
    default=None,
    help='TFDS data dir (default: a temporary one)',
  )
  parser.add_argument(
    '--cases', default=DEFAULT_CASES, help='comma-separated IMAGE_SIZE:CONFIG'
  )
  parser.add_argument('--workers', default='0,2')
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--batches', type=int, default=20)
  parser.add_argument(
    '--repeats',
    type=int,
    default=1,
    help='runs per cell; the median rate is printed',
  )
  parser.add_argument('--read_threads', type=int, default=None)
  parser.add_argument(
    '--photos',
    type=int,
    default=4,
    help='synthetic train photos, if a build is needed',
  )
  parser.add_argument('--photo_size', default='2448x3264')
  parser.add_argument('--boxes', default='120,150')
  args = parser.parse_args(argv)

  cases = []
  for case in args.cases.split(','):
    size, _, config = case.partition(':')
    if not size.isdigit() or not config:
      parser.error(f'bad case {case!r}; expected IMAGE_SIZE:CONFIG')
    cases.append((int(size), config))
  workers = [int(w) for w in args.workers.split(',')]
  photo_size = tuple(int(x) for x in args.photo_size.split('x'))
  boxes = tuple(int(x) for x in args.boxes.split(','))

  with tempfile.TemporaryDirectory() as tmp:
    data_dir = args.data_dir or Path(tmp)
    ensure_built(
      data_dir,
      {c for _, c in cases},
      photos=args.photos,
      photo_size=photo_size,
      boxes=boxes,
    )
    sources = {
      c: pipeline.open_source(
        DATASET, split='train', data_dir=data_dir, config=c
      )
      for _, c in cases
    }
    for config, source in sources.items():
      print(
        f'config {config}: {len(source)} train crops, mean {crop_stats(source)}'
      )
    print(
      f'\nbatch {args.batch_size}, {args.batches} batches timed, median '
      f'of {args.repeats}\n'
    )
    header = (
      f'{"size":>5} {"config":>7} {"workers":>7} {"img/s":>8} '
      f'{"cpu ms/img":>10} {"start s":>8}'
    )
    print(header)
    print('-' * len(header))
    for size, config in cases:
      for worker_count in workers:
        runs = [
          measure(
            sources[config],
            image_size=size,
            workers=worker_count,
            batch_size=args.batch_size,
            batches=args.batches,
            read_threads=args.read_threads,
          )
          for _ in range(args.repeats)
        ]
        startup, rate, cpu_ms = (
          statistics.median(column) for column in zip(*runs)
        )
        print(
          f'{size:>5} {config:>7} {worker_count:>7} {rate:>8.0f} '
          f'{cpu_ms:>10.2f} {startup:>8.1f}',
          flush=True,
        )
  return 0


if __name__ == '__main__':  # Guard needed: grain spawns worker processes.
  sys.exit(main())
