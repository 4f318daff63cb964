"""Build time and peak memory of `sku110k_crops` against the number of photos.

  python benchmarks/build_scaling.py --photos 100,1000,3000 \\
      [--workdir DIR --keep_photos] [--json out.json]

For each N: an archive `SKU110K_fixed.tar.gz` of N generated shelf photos of
SKU110K's size (default 2448x3264, 140-160 boxes each, split 70/5/25 %
train/val/test like the real archive; member order as `pack_archive` writes
it: annotations first), then `python -m data_builders.build sku110k_crops`
in a fresh subprocess, streaming the archive as a real build does. Recorded:
wall time, CPU time of the build's process tree, crops/s, s/photo, peak
memory (the tree's summed PSS and RSS sampled every `--sample_s`, the main
process's RSS, and the exact largest single-process RSS from wait4), output
bytes on disk. Generation and packing are timed apart and not counted.

The photos are rendered once (`--unique_photos`, default the largest N);
archives of more photos repeat them under new names (photo i of a split is
rendered photo i mod U of that split). The builder's work per photo does not
depend on the photos being distinct (it decodes and crops each one), so
this only saves rendering time (~1-2 s a photo per core).

Printed: one table with, at each N, time per photo and peak memory relative
to the smallest N; a least-squares line (s = a + b * photos, bytes = c *
crops) extrapolated to the real archive (`--real_photos`, `--real_boxes`);
then the input pipeline's images/s per grain worker process at 224 px
(`benchmarks/input_pipeline.py`'s `measure`, on the crops of the smallest N)
and the host cores a GPU needs for `--demand` images/s.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
REPO = _HERE.parent
# The real archive (SKU110K_fixed.tar.gz): photos and boxes of its CSVs.
REAL_PHOTOS = 11_762
REAL_BOXES = 1_730_000
# train / val / test shares of the real archive's photos (8,233 / 588 /
# 2,941 in the SKU110K paper).
SPLIT_FRACTIONS = {'train': 0.70, 'val': 0.05, 'test': 0.25}
ARCHIVE_ROOT = 'SKU110K_fixed'
ARCHIVE_NAME = 'SKU110K_fixed.tar.gz'
MIB = 1 << 20


def split_counts(n: int) -> dict[str, int]:
  """Photos per split for `n` photos (SPLIT_FRACTIONS, summing to n)."""
  counts = {
    s: int(round(n * f)) for s, f in SPLIT_FRACTIONS.items() if s != 'train'
  }
  counts['train'] = n - sum(counts.values())
  return {s: counts[s] for s in SPLIT_FRACTIONS if counts[s] > 0}


# ----------------------------------------------------------------------------
# Photos and archives.


def ensure_photos(
  folder: Path,
  *,
  photos: int,
  photo_size: tuple[int, int],
  boxes: tuple[int, int],
  workers: int,
) -> tuple[Path, float, bool]:
  """Renders the photo pool in `folder` unless one with these settings is there.

  Returns (the SKU110K_fixed root, generation seconds, reused).
  """
  from data_builders.synthetic import generate_shelves  # pylint: disable=g-import-not-at-top

  params = dict(
    seed=0,
    photo_size=list(photo_size),
    boxes=list(boxes),
    photos_per_split=split_counts(photos),
  )
  stamp = folder / 'params.json'
  if stamp.is_file():
    done = json.loads(stamp.read_text())
    if {k: done.get(k) for k in params} == params:
      return folder / ARCHIVE_ROOT, float(done.get('seconds', 0.0)), True
  if folder.exists():
    shutil.rmtree(folder)
  start = time.perf_counter()
  root = generate_shelves(
    folder,
    seed=0,
    photos_per_split=params['photos_per_split'],
    photo_size=photo_size,
    boxes_per_photo=boxes,
    num_workers=workers,
  )
  params['seconds'] = time.perf_counter() - start
  stamp.write_text(json.dumps(params))
  return root, params['seconds'], False


def _rows_by_photo(root: Path) -> dict[str, dict[str, list[list[str]]]]:
  """split -> photo name -> its CSV rows, from the pool's CSVs."""
  out = {}
  for split in SPLIT_FRACTIONS:
    path = root / 'annotations' / f'annotations_{split}.csv'
    if path.is_file():
      photos = out[split] = {}
      with path.open(newline='') as f:
        for row in csv.reader(f):
          photos.setdefault(row[0], []).append(row)
  return out


def pack_photos(root: Path, n: int, tar_path: Path) -> tuple[int, int]:
  """Writes an SKU110K_fixed.tar.gz of `n` photos drawn from the pool `root`.

  Same format as `data_builders.synthetic.pack_archive` (gzip with zeroed
  times, PAX tar, members sorted: annotations/ before images/), but photos
  beyond the pool's count repeat it under new names, which a folder of
  hard links cannot give (tar stores a repeated inode as a link member).
  Returns (photos, boxes) written.
  """
  pool = _rows_by_photo(root)
  members: dict[str, Path] = {}
  csv_text = {}
  num_boxes = 0
  for split, count in split_counts(n).items():
    unique = len(pool.get(split, {}))
    if not unique:
      raise ValueError(f'the photo pool has no {split} photos to repeat')
    lines = io.StringIO()
    writer = csv.writer(lines, lineterminator='\n')
    for i in range(count):
      name = f'{split}_{i}.jpg'
      source = f'{split}_{i % unique}.jpg'
      rows = pool[split][source]
      writer.writerows([name, *row[1:]] for row in rows)
      num_boxes += len(rows)
      members[f'{ARCHIVE_ROOT}/images/{name}'] = root / 'images' / source
    csv_text[f'{ARCHIVE_ROOT}/annotations/annotations_{split}.csv'] = (
      lines.getvalue().encode()
    )

  def info(name: str, size: int | None = None) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.mtime, member.uid, member.gid = 0, 0, 0
    if size is None:
      member.type, member.mode = tarfile.DIRTYPE, 0o755
    else:
      member.size, member.mode = size, 0o644
    return member

  tar_path.parent.mkdir(parents=True, exist_ok=True)
  with (
    open(tar_path, 'wb') as raw,
    gzip.GzipFile(filename='', mode='wb', fileobj=raw, mtime=0) as gz,
    tarfile.open(fileobj=gz, mode='w', format=tarfile.PAX_FORMAT) as tar,
  ):
    for folder in ('', '/annotations'):
      tar.addfile(info(ARCHIVE_ROOT + folder))
    for name in sorted(csv_text):
      tar.addfile(info(name, len(csv_text[name])), io.BytesIO(csv_text[name]))
    tar.addfile(info(f'{ARCHIVE_ROOT}/images'))
    for name in sorted(members):
      path = members[name]
      with path.open('rb') as f:
        tar.addfile(info(name, path.stat().st_size), f)
  return len(members), num_boxes


# ----------------------------------------------------------------------------
# One build in a fresh process.


def _become_subreaper() -> bool:
  """Makes this process adopt its orphaned descendants (Linux prctl).

  The build's forkserver, which reaps the crop workers, outlives the build's
  main process; adopted, it is reaped here, and its rusage (its own plus the
  workers') counts in the build's CPU time and peak RSS.
  """
  try:
    import ctypes  # pylint: disable=g-import-not-at-top

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
  except (OSError, AttributeError):
    return False


def _tree(process) -> list:
  import psutil  # pylint: disable=g-import-not-at-top  # tfds dependency.

  try:
    return [process, *process.children(recursive=True)]
  except psutil.Error:
    return []


def _tree_memory(tree, main_pid: int) -> tuple[int, int, int]:
  """(summed PSS, summed RSS, main RSS) in bytes of the processes `tree`."""
  import psutil  # pylint: disable=g-import-not-at-top

  pss = rss = main = 0
  for p in tree:
    try:
      full = p.memory_full_info()
    except psutil.Error:
      continue
    pss += getattr(full, 'pss', full.rss)
    rss += full.rss
    if p.pid == main_pid:
      main = full.rss
  return pss, rss, main


def _reap(pids: set[int], timeout_s: float) -> list:
  """wait4s the adopted `pids` as they exit; their rusages.

  A pid that is not (or no longer) our child and has gone was reaped by its
  own parent (a worker by the forkserver), whose rusage then covers it.
  """
  import psutil  # pylint: disable=g-import-not-at-top

  usages = []
  deadline = time.monotonic() + timeout_s
  while pids and time.monotonic() < deadline:
    for pid in sorted(pids):
      try:
        done, _, usage = os.wait4(pid, os.WNOHANG)
      except ChildProcessError:
        if not psutil.pid_exists(pid):
          pids.discard(pid)
        continue
      if done:
        usages.append(usage)
        pids.discard(pid)
    time.sleep(0.05)
  return usages


def _disk_bytes(folder: Path) -> int:
  return sum(
    (Path(d) / f).stat().st_size
    for d, _, files in os.walk(folder)
    for f in files
  )


def run_build(
  manual_dir: Path,
  data_dir: Path,
  *,
  config: str,
  workers: int | None,
  sample_s: float,
  log_path: Path,
) -> dict:
  """Builds `sku110k_crops` in a child process; its time, memory and output."""
  import psutil  # pylint: disable=g-import-not-at-top

  command = [
    sys.executable,
    '-m',
    'data_builders.build',
    'sku110k_crops',
    '--manual_dir',
    str(manual_dir),
    '--data_dir',
    str(data_dir),
    '--config',
    config,
  ]
  if workers is not None:
    command += ['--num_workers', str(workers)]
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
    p for p in (str(REPO), env.get('PYTHONPATH')) if p
  )
  peak = dict(pss=0, rss=0, main_rss=0)
  adopted = _become_subreaper()
  seen: set[int] = set()
  load_start = os.getloadavg()[0]
  with log_path.open('w') as log_file:
    start = time.perf_counter()
    child = subprocess.Popen(
      command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT
    )
    process = psutil.Process(child.pid)
    while True:
      pid, status, usage = os.wait4(child.pid, os.WNOHANG)
      if pid:
        break
      tree = _tree(process)
      seen.update(p.pid for p in tree)
      pss, rss, main = _tree_memory(tree, child.pid)
      peak = dict(
        pss=max(peak['pss'], pss),
        rss=max(peak['rss'], rss),
        main_rss=max(peak['main_rss'], main),
      )
      time.sleep(sample_s)
    seconds = time.perf_counter() - start
  # The main process's rusage, then that of the descendants it left behind
  # (each with the processes it reaped itself).
  usages = [usage]
  if adopted:
    usages += _reap(seen - {child.pid}, timeout_s=30)
  child.returncode = os.waitstatus_to_exitcode(status)
  output = log_path.read_text()
  if child.returncode:
    raise RuntimeError(
      f'build failed ({child.returncode}): {" ".join(command)}\n'
      f'{output[-3000:]}'
    )
  crops = photos = 0
  for line in output.splitlines():
    parts = line.split()
    # summary(): "  train: 1234 crops from 10 photos"
    if len(parts) == 6 and parts[2] == 'crops' and parts[3] == 'from':
      crops += int(parts[1])
      photos += int(parts[4])
  return dict(
    seconds=seconds,
    cpu_seconds=sum(u.ru_utime + u.ru_stime for u in usages),
    cpu_complete=adopted,
    crops=crops,
    built_photos=photos,
    peak_pss=peak['pss'],
    peak_rss_sum=peak['rss'],
    peak_main_rss=peak['main_rss'],
    # Linux reports ru_maxrss in KiB.
    max_process_rss=max(u.ru_maxrss for u in usages) * 1024,
    load_start=load_start,
    load_end=os.getloadavg()[0],
    disk_bytes=_disk_bytes(data_dir),
  )


# ----------------------------------------------------------------------------
# Scaling table and extrapolation.


def fit_line(x, y) -> tuple[float, float, float]:
  """(intercept, slope, r^2) of least squares y = a + b x (through 0 for one x)."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  if len(set(x.tolist())) < 2:
    return 0.0, float(y.sum() / x.sum()), float('nan')
  slope, intercept = np.polyfit(x, y, 1)
  fitted = intercept + slope * x
  total = ((y - y.mean()) ** 2).sum()
  r2 = 1 - ((y - fitted) ** 2).sum() / total if total else 1.0
  return float(intercept), float(slope), float(r2)


def add_ratios(rows: list[dict]) -> None:
  base = min(rows, key=lambda r: r['photos'])
  for r in rows:
    r['s_per_photo'] = r['seconds'] / r['photos']
    r['cpu_s_per_photo'] = r['cpu_seconds'] / r['photos']
    r['crops_per_s'] = r['crops'] / r['seconds']
    r['time_ratio'] = r['s_per_photo'] / base['s_per_photo']
    r['cpu_ratio'] = r['cpu_s_per_photo'] / base['cpu_s_per_photo']
    r['memory_ratio'] = r['peak_pss'] / base['peak_pss']


def extrapolate(rows: list[dict], photos: int, boxes: int) -> dict:
  """Linear fits over the rows, evaluated at the real archive's size."""
  n = [r['photos'] for r in rows]
  a, b, r2 = fit_line(n, [r['seconds'] for r in rows])
  ca, cb, cr2 = fit_line(n, [r['cpu_seconds'] for r in rows])
  if len(set(n)) > 1:
    ma, mb, _ = fit_line(n, [r['peak_pss'] for r in rows])
  else:  # Memory is not proportional to photos; one N gives no slope.
    ma, mb = max(r['peak_pss'] for r in rows), float('nan')
  bytes_per_crop = sum(r['disk_bytes'] for r in rows) / sum(
    r['crops'] for r in rows
  )
  return dict(
    photos=photos,
    boxes=boxes,
    fixed_s=a,
    s_per_photo=b,
    r2=r2,
    seconds=a + b * photos,
    cpu_fixed_s=ca,
    cpu_s_per_photo=cb,
    cpu_r2=cr2,
    cpu_seconds=ca + cb * photos,
    memory_bytes_per_photo=mb,
    peak_pss=ma if math.isnan(mb) else ma + mb * photos,
    bytes_per_crop=bytes_per_crop,
    disk_bytes=bytes_per_crop * boxes,
  )


def _hms(seconds: float) -> str:
  minutes = seconds / 60
  return f'{minutes / 60:.1f} h' if minutes >= 90 else f'{minutes:.0f} min'


def format_tables(rows: list[dict], fit: dict, settings: dict) -> str:
  lines = [
    f'sku110k_crops/{settings["config"]} builds, {settings["workers"]} build '
    f'workers, {settings["photo_size"]} photos, {settings["boxes"]} boxes '
    f'each ({settings["unique_photos"]} rendered in '
    f'{settings["gen_seconds"]:.0f} s, not counted); ratios vs the smallest '
    'N; memory = peak summed PSS of the build process tree',
    '',
    '| photos | boxes | crops | pack s | build s | s/photo | x s/photo '
    '| CPU s/photo | x CPU | crops/s | peak PSS MiB | x mem | max proc RSS '
    'MiB | main RSS MiB | output MiB | load |',
    '|' + '---|' * 16,
  ]
  for r in rows:
    lines.append(
      f'| {r["photos"]:,} | {r["boxes"]:,} | {r["crops"]:,} | '
      f'{r["pack_seconds"]:.0f} | '
      f'{r["seconds"]:.1f} | {r["s_per_photo"]:.3f} | '
      f'{r["time_ratio"]:.2f} | {r["cpu_s_per_photo"]:.3f} | '
      f'{r["cpu_ratio"]:.2f} | {r["crops_per_s"]:,.0f} | '
      f'{r["peak_pss"] / MIB:,.0f} | {r["memory_ratio"]:.2f} | '
      f'{r["max_process_rss"] / MIB:,.0f} | {r["peak_main_rss"] / MIB:,.0f} '
      f'| {r["disk_bytes"] / MIB:,.0f} | {r["load_start"]:.1f}-'
      f'{r["load_end"]:.1f} |'
    )
  steps = [
    f'{(b["seconds"] - a["seconds"]) / (b["photos"] - a["photos"]):.4f} s '
    f'({(b["cpu_seconds"] - a["cpu_seconds"]) / (b["photos"] - a["photos"]):.4f}'
    f' CPU s) from {a["photos"]:,} to {b["photos"]:,}'
    for a, b in zip(rows, rows[1:])
  ]
  lines += [
    '',
    *(['Each further photo: ' + ', '.join(steps) + '.'] if steps else []),
    f'Linear fit: build s = {fit["fixed_s"]:.1f} + {fit["s_per_photo"]:.4f} '
    f'x photos (r^2 {fit["r2"]:.4f}); CPU s = {fit["cpu_fixed_s"]:.1f} + '
    f'{fit["cpu_s_per_photo"]:.4f} x photos (r^2 {fit["cpu_r2"]:.4f}); '
    f'peak PSS grows {fit["memory_bytes_per_photo"] * 1000 / MIB:.1f} MiB '
    'per 1,000 photos.',
    f'Extrapolated to the real archive ({fit["photos"]:,} photos, '
    f'{fit["boxes"]:,} boxes): build {_hms(fit["seconds"])} '
    f'({fit["seconds"]:,.0f} s; CPU {_hms(fit["cpu_seconds"])}), '
    f'output {fit["disk_bytes"] / 1e9:.1f} GB '
    f'({fit["bytes_per_crop"] / 1024:.1f} KiB a crop), peak PSS '
    f'{fit["peak_pss"] / MIB:,.0f} MiB.',
  ]
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# Input pipeline per worker process.


def pipeline_rates(data_dir: Path, config: str, args) -> list[dict]:
  sys.path.insert(0, str(_HERE))
  import input_pipeline as ip  # pylint: disable=g-import-not-at-top

  from sspr_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  source = pipeline.open_source(
    ip.DATASET, split='train', data_dir=data_dir, config=config
  )
  rows = []
  for workers in args.pipeline_workers:
    runs = [
      ip.measure(
        source,
        image_size=args.pipeline_size,
        workers=workers,
        batch_size=args.pipeline_batch_size,
        batches=args.pipeline_batches,
        read_threads=None,
      )
      for _ in range(args.repeats)
    ]
    startup, rate, cpu_ms = (statistics.median(c) for c in zip(*runs))
    rows.append(
      dict(
        workers=workers,
        images_per_s=rate,
        per_worker=rate / workers if workers else rate,
        cpu_ms_per_image=cpu_ms,
        startup_s=startup,
        crops=len(source),
      )
    )
  return rows


def format_pipeline(rows: list[dict], args) -> str:
  lines = [
    f'Input pipeline at {args.pipeline_size} px ({args.config} crops, batch '
    f'{args.pipeline_batch_size}, {args.pipeline_batches} batches, median of '
    f'{args.repeats}; workers 0 = decoding threads in the main process)',
    '',
    '| grain workers | images/s | images/s per worker | CPU ms/image | '
    'start-up s |',
    '|---|---|---|---|---|',
  ]
  for r in rows:
    lines.append(
      f'| {r["workers"]} | {r["images_per_s"]:,.0f} | '
      f'{r["per_worker"]:,.0f} | {r["cpu_ms_per_image"]:.2f} | '
      f'{r["startup_s"]:.1f} |'
    )
  # CPU time per image (all processes) is what a core budget needs, and it
  # does not depend on what else ran on the machine.
  with_workers = [r for r in rows if r['workers']] or rows
  cpu_ms = statistics.median(r['cpu_ms_per_image'] for r in with_workers)
  lines += [
    '',
    f'Host cores a GPU needs (at {cpu_ms:.2f} CPU ms an image, the median '
    'over the runs with workers; one worker process per core, plus the main '
    'process):',
    '',
    '| GPU consumes images/s | host cores |',
    '|---|---|',
  ]
  for demand in args.demand:
    lines.append(f'| {demand:,} | {demand * cpu_ms / 1000:.1f} |')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
  return [int(v) for v in text.split(',')]


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--photos', type=_ints, default=[100, 1000, 3000])
  parser.add_argument('--photo_size', default='2448x3264', help='WxH')
  parser.add_argument('--boxes', default='140,160', help='min,max per photo')
  parser.add_argument(
    '--unique_photos',
    type=int,
    default=None,
    help='photos rendered (default: the largest N); more are repeats',
  )
  parser.add_argument('--config', default='native')
  parser.add_argument(
    '--workers', type=int, default=None, help='build workers (default: cores)'
  )
  parser.add_argument(
    '--gen_workers', type=int, default=None, help='default: cores'
  )
  parser.add_argument('--sample_s', type=float, default=0.25)
  parser.add_argument(
    '--workdir', type=Path, default=None, help='default: a temporary folder'
  )
  parser.add_argument(
    '--keep_photos',
    action='store_true',
    help='keep the rendered photos in --workdir for the next run',
  )
  parser.add_argument('--real_photos', type=int, default=REAL_PHOTOS)
  parser.add_argument('--real_boxes', type=int, default=REAL_BOXES)
  parser.add_argument('--skip_pipeline', action='store_true')
  parser.add_argument('--pipeline_workers', type=_ints, default=[0, 1, 2])
  parser.add_argument('--pipeline_size', type=int, default=224)
  parser.add_argument('--pipeline_batch_size', type=int, default=64)
  parser.add_argument('--pipeline_batches', type=int, default=20)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument(
    '--demand',
    type=_ints,
    default=[1000, 2500, 5000, 10000],
    help='images/s a GPU consumes, for the host-core table',
  )
  parser.add_argument('--json', type=Path, default=None)
  args = parser.parse_args(argv)
  photo_size = tuple(int(v) for v in args.photo_size.split('x'))
  boxes = tuple(int(v) for v in args.boxes.split(','))
  sizes = sorted(set(args.photos))
  cores = os.cpu_count() or 1
  workers = cores if args.workers is None else args.workers

  temporary = args.workdir is None
  work = (
    Path(tempfile.mkdtemp(prefix='build_scaling_'))
    if temporary
    else (args.workdir)
  )
  work.mkdir(parents=True, exist_ok=True)
  unique = args.unique_photos or sizes[-1]
  memory_gib = os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30
  print(
    f'{cores} cores, {memory_gib:.0f} GiB; photos {args.photo_size}, {args.boxes} boxes, {unique} rendered; '
    f'workdir {work}',
    flush=True,
  )
  rows, pipeline_rows, fit = [], [], {}
  settings = dict(
    photo_size=args.photo_size,
    boxes=args.boxes,
    unique_photos=unique,
    config=args.config,
    workers=workers,
    cores=cores,
    gen_seconds=None,
    gen_reused=None,
  )
  try:
    root, gen_seconds, reused = ensure_photos(
      work / 'photos',
      photos=unique,
      photo_size=photo_size,
      boxes=boxes,
      workers=cores if args.gen_workers is None else args.gen_workers,
    )
    settings.update(gen_seconds=gen_seconds, gen_reused=reused)
    print(
      f'photos: {unique} rendered in {gen_seconds:.0f} s'
      + (' (an earlier run; reused)' if reused else ''),
      flush=True,
    )
    for n in sizes:
      manual = work / f'manual_{n}'
      data_dir = work / f'data_{n}'
      shutil.rmtree(data_dir, ignore_errors=True)
      start = time.perf_counter()
      photos, num_boxes = pack_photos(root, n, manual / ARCHIVE_NAME)
      pack_seconds = time.perf_counter() - start
      archive_bytes = (manual / ARCHIVE_NAME).stat().st_size
      print(
        f'N={n}: archive {archive_bytes / 1e9:.2f} GB packed in '
        f'{pack_seconds:.0f} s; building ...',
        flush=True,
      )
      result = run_build(
        manual,
        data_dir,
        config=args.config,
        workers=args.workers,
        sample_s=args.sample_s,
        log_path=work / f'build_{n}.log',
      )
      if result['built_photos'] != photos:
        raise RuntimeError(
          f'N={n}: the build read {result["built_photos"]} photos, not {photos}'
        )
      row = dict(
        photos=photos,
        boxes=num_boxes,
        pack_seconds=pack_seconds,
        archive_bytes=archive_bytes,
        **result,
      )
      rows.append(row)
      print(
        f'N={n}: {row["seconds"]:.1f} s, {row["crops"]:,} crops, peak PSS '
        f'{row["peak_pss"] / MIB:,.0f} MiB, output '
        f'{row["disk_bytes"] / MIB:,.0f} MiB',
        flush=True,
      )
      shutil.rmtree(manual)
      if n != sizes[0] or args.skip_pipeline:
        shutil.rmtree(data_dir)
    add_ratios(rows)
    fit = extrapolate(rows, args.real_photos, args.real_boxes)
    print('\n' + format_tables(rows, fit, settings), flush=True)
    if not args.skip_pipeline:
      data_dir = work / f'data_{sizes[0]}'
      pipeline_rows = pipeline_rates(data_dir, args.config, args)
      shutil.rmtree(data_dir)
      print('\n' + format_pipeline(pipeline_rows, args), flush=True)
  finally:
    if temporary or not args.keep_photos:
      shutil.rmtree(work / 'photos', ignore_errors=True)
    for pattern in ('manual_*', 'data_*'):
      for path in work.glob(pattern):
        shutil.rmtree(path, ignore_errors=True)
    if temporary:
      shutil.rmtree(work, ignore_errors=True)
  result = dict(rows=rows, fit=fit, pipeline=pipeline_rows, settings=settings)
  if args.json:
    args.json.write_text(json.dumps(result, indent=1))
  return result


if __name__ == '__main__':  # Guard needed: grain spawns worker processes.
  main(sys.argv[1:])
