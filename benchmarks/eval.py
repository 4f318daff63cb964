"""Gallery mAP: jitted sspr_jax vs. the thesis's per-query scikit-learn loop.

Synthetic gallery shaped like the thesis's (D = 2048, ~4 crops per class).
Baseline = numpy float32 cosine score matrix + ``average_precision_score`` per
query in a Python loop.  For large N the baseline runs on the first
``--sklearn-queries`` queries only and its time is extrapolated linearly (each
query costs the same); the table says so.  The peak-memory probe runs
``full_gallery_per_query`` on the first few chunks of an N = 100,000 gallery in
a child process (memory is O(chunk x N) per chunk, so a few chunks reach the
peak) and extrapolates the full run time from them.

    python benchmarks/eval.py                    # N = 1,643 and 20,000, memory at 100,000
    python benchmarks/eval.py --sizes 1643 --memory-n 0

The few-label heads against GridSearchCV: ``benchmarks/heads.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

DIM = 2048


def make_gallery(
  n: int, dim: int = DIM, crops_per_class: float = 4.0, seed: int = 0
):
  """Random embeddings with class structure, mAP far from 0 and 1."""
  rng = np.random.default_rng(seed)
  num_classes = max(1, int(round(n / crops_per_class)))
  labels = rng.integers(0, num_classes, size=n)
  centres = rng.standard_normal((num_classes, dim), dtype=np.float32)
  emb = rng.standard_normal((n, dim), dtype=np.float32)
  emb += 0.2 * centres[labels]
  return emb, labels


def sklearn_per_query(emb: np.ndarray, labels: np.ndarray, num_queries: int):
  """The thesis's way: scores via numpy, then sklearn AP per query in a loop."""
  from sklearn.metrics import average_precision_score

  normed = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  aps = np.full(num_queries, np.nan)
  everything = np.arange(len(labels))
  t0 = time.perf_counter()
  scores_block = (
    normed[:num_queries] @ normed.T
  )  # one BLAS matmul, not per query
  matmul_s = time.perf_counter() - t0
  for i in range(num_queries):
    scores = scores_block[i]
    others = everything != i
    y_true = labels[others] == labels[i]
    if y_true.any():
      aps[i] = average_precision_score(y_true, scores[others])
  return aps, matmul_s


def compare(n: int, sklearn_queries: int, repeats: int) -> dict:
  import jax

  from sspr_jax.evaluate import gallery

  emb, labels = make_gallery(n)
  t0 = time.perf_counter()
  rows = gallery.full_gallery_per_query(emb, labels, score='cosine')
  compile_and_run = time.perf_counter() - t0
  jax_times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    result = gallery.full_gallery_map(emb, labels, score='cosine')
    jax_times.append(time.perf_counter() - t0)
  jax_time = float(np.median(jax_times))

  q = min(sklearn_queries, n)
  t0 = time.perf_counter()
  ref_ap, matmul_s = sklearn_per_query(emb, labels, q)
  sk_time = (time.perf_counter() - t0) * n / q
  keep = ~np.isnan(ref_ap)
  max_diff = float(np.max(np.abs(ref_ap[keep] - rows['ap'][:q][keep])))
  out = {
    'n': n,
    'map_jax': result['map'],
    'map_per_query_jax': result['map_per_query'],
    'jax_s': jax_time,
    'jax_first_call_s': compile_and_run,
    'sklearn_s': sk_time,
    'sklearn_queries': q,
    'numpy_matmul_s': matmul_s * n / q,
    'speedup': sk_time / jax_time,
    'max_abs_ap_diff': max_diff,
    'top1': result['top1'],
    'devices': str(jax.devices()),
  }
  if q == n:  # the whole reference: compare the class-balanced mAP too
    classes = labels[keep]
    out['map_sklearn'] = float(
      np.mean([ref_ap[keep][classes == c].mean() for c in np.unique(classes)])
    )
  return out


_PROBE = r"""
import json, sys, time
def vm(field):  # this process's own counters (ru_maxrss would include the parent's at exec)
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
def reset_peak():  # Linux >= 4.0: VmHWM := current RSS
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
import jax, jax.numpy as jnp
jnp.zeros(1).block_until_ready()
baseline = vm("VmHWM")
n, chunks = int(sys.argv[1]), int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from eval import make_gallery
from sspr_jax.evaluate import gallery
emb, labels = make_gallery(n)
with_data = vm("VmRSS")
reset_peak()  # drop the data generator's temporaries from the peak
chunk = gallery.default_chunk_size(n)
t0 = time.perf_counter()
gallery.full_gallery_per_query(emb, labels, num_queries=chunk)  # compile + first chunk
first = time.perf_counter() - t0
t0 = time.perf_counter()
gallery.full_gallery_per_query(emb, labels, num_queries=chunk * chunks)
per_query = (time.perf_counter() - t0) / (chunk * chunks)
print(json.dumps({"n": n, "chunk": chunk, "queries_run": chunk * chunks,
                  "baseline_jax_mib": baseline, "with_data_mib": with_data,
                  "peak_mib": vm("VmHWM"), "extrapolated_full_s": per_query * n}))
"""


def memory_probe(n: int, chunks: int) -> dict:
  """Peak RSS of a child process that evaluates the first chunks of an N-gallery."""
  import os

  here = os.path.dirname(os.path.abspath(__file__))
  proc = subprocess.run(
    [sys.executable, '-c', _PROBE, str(n), str(chunks), here],
    capture_output=True,
    text=True,
    check=True,
  )
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', type=int, nargs='*', default=[1643, 20000])
  parser.add_argument(
    '--sklearn-queries',
    type=int,
    default=2000,
    help='queries the sklearn loop runs (time extrapolated to N)',
  )
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument(
    '--memory-n', type=int, default=100_000, help='0 skips the probe'
  )
  parser.add_argument('--memory-chunks', type=int, default=3)
  args = parser.parse_args(argv)
  print(
    '| N | mAP jax | mAP sklearn | max |AP diff| | jax s (1st call) | sklearn loop s '
    '| of which numpy scores matmul s | speed-up | top-1 |'
  )
  print('|---|---|---|---|---|---|---|---|---|')
  for n in args.sizes:
    r = compare(n, args.sklearn_queries, args.repeats)
    sk = f'{r["sklearn_s"]:.2f}' + (
      ''
      if r['sklearn_queries'] == n
      else f' (extrap. from {r["sklearn_queries"]} queries)'
    )
    print(
      f'| {n:,} | {r["map_jax"]:.6f} | {r.get("map_sklearn", float("nan")):.6f} | {r["max_abs_ap_diff"]:.1e} '
      f'| {r["jax_s"]:.2f} ({r["jax_first_call_s"]:.2f}) | {sk} | {r["numpy_matmul_s"]:.2f} | {r["speedup"]:.1f}x | {r["top1"]:.3f} |',
      flush=True,
    )
  if args.memory_n:
    m = memory_probe(args.memory_n, args.memory_chunks)
    print(
      f'\nN = {m["n"]:,}, D = {DIM}, chunk {m["chunk"]}: peak RSS {m["peak_mib"]:.0f} MiB '
      f'(peak VmHWM; jax imported: {m["baseline_jax_mib"]:.0f} MiB; '
      f'+ float32 gallery held in numpy: {m["with_data_mib"]:.0f} MiB); '
      f'{m["queries_run"]} queries run, full run extrapolated to {m["extrapolated_full_s"] / 60:.1f} min'
    )


if __name__ == '__main__':
  main()
