"""Orbax checkpoints of the whole train state in WORKDIR/checkpoints.

Each step directory holds `state` (a pytree saved with StandardSave, restorable
with Orbax alone) and `meta` (JSON: the config and a few numbers).
"""
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """Periodic, keep-N, asynchronous saves and restore of the latest step."""

  def __init__(self, workdir: str, *, max_to_keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=async_save))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict | None = None) -> bool:
    """Starts saving `state` at `step` (returns before the write ends if async)."""
    return self._manager.save(
        step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave(meta or {})), force=True)

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
        logging.warning('Checkpoint step %d in %s does not restore (%s: %s); '
                        'moved to %s.corrupt, falling back to the previous one.',
                        step, self.directory, type(e).__name__,
                        str(e).splitlines()[0][:300] if str(e) else '', bad)
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
        step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
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
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)
  return checkpointer.restore(state_dir, target)
