"""Metrics to WORKDIR/metrics.jsonl and TensorBoard event files, without TF."""

import json
import math
import os
import struct
import time

import numpy as np

from sspr_jax.core import results


class MetricsWriter:
  """Writes metrics from process 0; other processes write nothing.

  Scalars go to WORKDIR/metrics.jsonl (unless `jsonl=False`) and TensorBoard
  (WORKDIR/tensorboard); texts and images to TensorBoard only.
  """

  def __init__(
    self,
    workdir: str,
    *,
    enabled: bool = True,
    jsonl: bool = True,
    resume_step: int | None = None,
  ):
    """`resume_step`: the step training resumes from; metrics.jsonl's records
    of later steps (and a line cut by a kill) are dropped first."""
    self.enabled = enabled
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    if jsonl and resume_step is not None:
      _keep_until(os.path.join(workdir, 'metrics.jsonl'), resume_step)
    self._jsonl = (
      open(os.path.join(workdir, 'metrics.jsonl'), 'a') if jsonl else None
    )
    # tensorboardX writes event files with its own protobufs: no TensorFlow.
    from tensorboardX import SummaryWriter

    self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, metrics: dict, *, tensorboard_prefix: str = ''):
    """One record of scalars; TensorBoard tags without a '/' get the prefix.

    metrics.jsonl keeps the plain keys (what the plots and reports read).
    """
    if not self.enabled:
      return
    scalars = {k: float(np.asarray(v)) for k, v in metrics.items()}
    record = {'step': int(step), 'time': time.time()}
    record.update(
      {k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}
    )
    if self._jsonl is not None:
      self._jsonl.write(json.dumps(record) + '\n')
      self._jsonl.flush()
    for k, v in scalars.items():
      tag = k if '/' in k else tensorboard_prefix + k
      self._tb.add_scalar(tag, v, int(step))

  def hparams(self, config: dict, metric_tags) -> None:
    """The run's settings in TensorBoard's HParams tab, beside `metric_tags`.

    `config` is nested (a ConfigDict's `to_dict()`); it is flattened to
    `a.b` keys, lists and None as text. Written into this run's own event
    files, so the HParams tab links the settings to this run's scalars (the
    tensorboardX `add_hparams` would open a sub-run of its own).
    """
    if not self.enabled:
      return
    from tensorboardX.summary import hparams  # pylint: disable=g-import-not-at-top

    flat = {}

    def visit(prefix, node):
      for key, value in node.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
          visit(name + '.', value)
        elif isinstance(value, (bool, int, float, str)):
          flat[name] = value
        else:
          flat[name] = str(value)

    visit('', config)
    for summary in hparams(flat, {tag: 0.0 for tag in metric_tags}):
      self._tb.file_writer.add_summary(summary)

  def text(self, tag: str, text: str, step: int = 0):
    """A text summary in TensorBoard (e.g. the run's resolved config)."""
    if self.enabled:
      self._tb.add_text(tag, text, int(step))

  def image(self, tag: str, image, step: int = 0):
    """An image in TensorBoard: a PNG (any file PIL reads) or an array.

    Arrays are HxW (grey) or HxWxC with C = 1, 3 or 4; uint8, or floats in
    [0, 1]. A file is read as RGB.
    """
    if not self.enabled:
      return
    if isinstance(image, (str, os.PathLike)):
      from PIL import Image  # pylint: disable=g-import-not-at-top

      with Image.open(image) as img:
        image = np.asarray(img.convert('RGB'))
    image = np.asarray(image)
    if image.ndim == 2:
      dataformats = 'HW'
    elif image.ndim == 3 and image.shape[-1] in (1, 3, 4):
      dataformats = 'HWC'
    else:
      raise ValueError(
        f'TensorBoard image {tag!r}: expected an HxW or HxWxC (C = 1, 3, 4) '
        f'array, got shape {image.shape}.'
      )
    if image.dtype != np.uint8:
      image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    self._tb.add_image(tag, image, int(step), dataformats=dataformats)

  def close(self):
    if self.enabled:
      if self._jsonl is not None:
        self._jsonl.close()
      self._tb.close()


def _records(path: str) -> list[dict]:
  """The whole records of a metrics.jsonl; a last line cut by a kill is
  left out."""
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except ValueError:
      if i < len(lines) - 1 or line.endswith('\n'):
        raise ValueError(f'{path}, line {i + 1}: not a JSON record.') from None
  return records


def _keep_until(path: str, step: int) -> None:
  """Rewrites `path` (atomically) with its records of steps <= `step`."""
  if not os.path.exists(path):
    return
  kept = [r for r in _records(path) if r.get('step', 0) <= step]
  results.write_text(path, ''.join(json.dumps(r) + '\n' for r in kept))


def read_metrics(workdir: str) -> list[dict]:
  """The JSON-lines records written to `workdir`, in order."""
  return _records(os.path.join(workdir, 'metrics.jsonl'))


def read_events(logdir) -> list:
  """Every Event of the TensorBoard files in `logdir`, without TensorFlow.

  Event files are TFRecord-framed: length, its CRC, the record, its CRC.
  """
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top

  events = []
  paths = sorted(
    os.path.join(logdir, n)
    for n in os.listdir(logdir)
    if n.startswith('events.out.tfevents.')
  )
  for path in paths:
    with open(path, 'rb') as f:
      data, i = f.read(), 0
    while i < len(data):
      (length,) = struct.unpack('<Q', data[i : i + 8])
      event = event_pb2.Event()
      event.ParseFromString(data[i + 12 : i + 12 + length])
      events.append(event)
      i += 12 + length + 4
  return events
