"""Orbax checkpoints of the whole train state in WORKDIR/checkpoints.

Each step directory holds `state` (a pytree saved with StandardSave, restorable
with Orbax alone) and `meta` (JSON: the config and a few numbers).

A step is written into `<step>.orbax-checkpoint-tmp` and renamed to `<step>`
only once complete, so a write that fails (disk full, no permission) never
leaves a step directory that looks good; the failure is raised as
`CheckpointWriteError` naming the step, even when the write ran in the
background and failed after `save` returned.
"""

import logging
import os
import re
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointWriteError(OSError):
  """Writing a checkpoint step failed; earlier steps are untouched."""


def _describe(error: BaseException) -> str:
  """`Type: first line` of an error, with the OS error spelt out.

  TensorStore reports a failed file write as a ValueError ending in
  `[os_error_code='28']`; the code is turned into its name (`No space left on
  device`) so that the cause reads the same as a plain OSError's.
  """
  text = str(error).strip().splitlines()[0][:600] if str(error).strip() else ''
  described = (
    f'{type(error).__name__}: {text}' if text else type(error).__name__
  )
  code = re.search(r"os_error_code='?(\d+)", str(error))
  if code and not isinstance(error, OSError):
    number = int(code.group(1))
    described += f' (OS error {number}: {os.strerror(number)})'
  return described


def _is_io_error(error: BaseException) -> bool:
  return isinstance(error, OSError) or bool(
    re.search(
      r'os_error_code|errno|Failed writing|No space|Permission denied|'
      r'Read-only file system|quota',
      str(error),
      re.IGNORECASE,
    )
  )


class Checkpoints:
  """Periodic, keep-N, asynchronous saves and restore of the latest step."""

  def __init__(
    self, workdir: str, *, max_to_keep: int = 3, async_save: bool = True
  ):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        create=True,
        enable_async_checkpointing=async_save,
        # Leftovers of a write that failed or was killed.
        cleanup_tmp_directories=True,
      ),
    )
    self._writing: int | None = None  # Step whose async write may still run.

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def _write_error(
    self, step: int, error: BaseException
  ) -> CheckpointWriteError:
    try:
      self._manager.reload()  # Forget the failed step: it is not on disk.
      latest = self.latest_step()
    except Exception:  # pylint: disable=broad-except
      latest = None
    kept = (
      f'Earlier checkpoints are intact (latest good: step {latest}); '
      f'rerunning the same command resumes from it.'
      if latest is not None
      else 'There is no earlier checkpoint; a rerun starts from step 0.'
    )
    if _is_io_error(error):
      todo = (
        'Free disk space on that filesystem or check that it is writable '
        '(permissions, quota), then rerun.'
      )
    else:
      todo = 'See the cause above.'
    return CheckpointWriteError(
      f'Writing checkpoint step {step} to {self.directory} failed: '
      f'{_describe(error)}. {kept} {todo}'
    )

  def _finish_pending(self):
    """Waits for the write in flight; its failure is raised naming its step."""
    step, self._writing = self._writing, None
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      if step is None:
        raise
      raise self._write_error(step, e) from e

  def save(self, step: int, state: Any, meta: dict | None = None) -> bool:
    """Starts saving `state` at `step` (returns before the write ends if async).

    Raises `CheckpointWriteError` if this write cannot start, or if the
    previous asynchronous write failed (naming that step).
    """
    self._finish_pending()
    try:
      saved = self._manager.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})
        ),
        force=True,
      )
    except Exception as e:  # pylint: disable=broad-except
      raise self._write_error(step, e) from e
    self._writing = step if saved else None
    return saved

  def restore_latest_good(self, abstract_state: Any):
    """(state, meta, step) of the newest checkpoint that restores.

    A checkpoint that fails to restore (truncated or corrupted files, e.g. a
    machine that died mid-write) is moved aside to `<step>.corrupt` with a
    warning naming it, and the previous one is tried. Returns (None, None,
    None) when there is no checkpoint at all.
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state, meta = self.restore(abstract_state, step)
        return state, meta, step
      except Exception as e:  # pylint: disable=broad-except
        bad = os.path.join(self.directory, str(step))
        logging.warning(
          'Checkpoint step %d in %s does not restore (%s: %s); '
          'moved to %s.corrupt, falling back to the previous one.',
          step,
          self.directory,
          type(e).__name__,
          str(e).splitlines()[0][:300] if str(e) else '',
          bad,
        )
        if jax.process_index() == 0:
          os.replace(bad, bad + '.corrupt')
        self._manager.reload()
    return None, None, None

  def restore(self, abstract_state: Any, step: int | None = None):
    """Restores (state, meta) at `step` (default latest) onto `abstract_state`'s
    shapes, dtypes and shardings."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'No checkpoint in {self.directory}.')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
      ),
    )
    return restored.state, restored.meta

  def wait(self):
    """Blocks until the write in flight ends; raises `CheckpointWriteError`."""
    self._finish_pending()

  def close(self, *, raise_errors: bool = True):
    """Waits for the write in flight and closes the manager.

    `raise_errors=False` (closing while another error propagates) logs a
    failed write instead of raising it, so the first error is not masked.
    """
    try:
      self._finish_pending()
    except CheckpointWriteError as e:
      if raise_errors:
        raise
      logging.error('%s', e)
    finally:
      # Orbax (0.12) removes a failed write's leftover tmp folders in a
      # background thread started by the constructor, and its close() does
      # not wait for it: without this the thread outlives close().
      wait_for_cleanup = getattr(
        self._manager, '_maybe_await_cleanup_tmp_directory', None
      )
      if wait_for_cleanup is not None:
        wait_for_cleanup()
      self._manager.close()


def load_state(state_dir: str, device: jax.Device | None = None):
  """The saved state tree at `<workdir>/checkpoints/<step>/state`, on `device`.

  Works whatever topology saved it (several processes or devices): Orbax
  needs target shardings for that, so they come from the checkpoint's own
  metadata and point at one local device.
  """
  checkpointer = ocp.StandardCheckpointer()
  metadata = checkpointer.metadata(state_dir)
  tree = getattr(metadata, 'item_metadata', metadata)
  sharding = jax.sharding.SingleDeviceSharding(device or jax.local_devices()[0])
  target = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree
  )
  return checkpointer.restore(state_dir, target)
