"""Progress bars for the evaluation's long stages (tqdm, process 0 only).

`bar(...)` is a `tqdm.tqdm` that also redraws itself every few seconds, so
its elapsed time (and ETA) keeps moving while one long block of work (one
jitted grid program) runs between two updates.
"""

import contextlib
import threading

import jax
import tqdm

REFRESH_SECONDS = 2.0


@contextlib.contextmanager
def bar(desc: str, total: int, unit: str, *, enabled: bool = True):
  """A ticking tqdm bar over `total` units; `enabled` False shows nothing."""
  b = tqdm.tqdm(
    total=total,
    desc=desc,
    unit=unit,
    leave=False,
    dynamic_ncols=True,
    disable=not enabled or jax.process_index() != 0,
  )
  stop = threading.Event()

  def tick():
    while not stop.wait(REFRESH_SECONDS):
      b.refresh()

  thread = None
  if not b.disable:
    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
  try:
    yield b
  finally:
    stop.set()
    if thread is not None:
      thread.join()
    b.close()
