"""Metrics to WORKDIR/metrics.jsonl and TensorBoard event files, without TF."""

import json
import math
import os
import time

import numpy as np


class MetricsWriter:
  """Writes scalar metrics from process 0; other processes write nothing."""

  def __init__(self, workdir: str, *, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    # tensorboardX writes event files with its own protobufs: no TensorFlow.
    from tensorboardX import SummaryWriter

    self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, metrics: dict):
    if not self.enabled:
      return
    scalars = {k: float(np.asarray(v)) for k, v in metrics.items()}
    record = {'step': int(step), 'time': time.time()}
    record.update(
      {k: (v if math.isfinite(v) else str(v)) for k, v in scalars.items()}
    )
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()
    for k, v in scalars.items():
      self._tb.add_scalar(k, v, int(step))

  def text(self, tag: str, text: str, step: int = 0):
    """A text summary in TensorBoard (e.g. the run's resolved config)."""
    if self.enabled:
      self._tb.add_text(tag, text, int(step))

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """The JSON-lines records written to `workdir`, in order."""
  path = os.path.join(workdir, 'metrics.jsonl')
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
