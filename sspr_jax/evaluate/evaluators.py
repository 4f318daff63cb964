"""Evaluators: objects that score a backbone's embeddings of a labeled gallery.

As big_vision's `evaluators/`: an evaluator is built from config by name
(`build(name, gallery, module, settings)`) for one backbone module and has
`run(variables) -> metrics`. The trainer is handed a list of them (with how
often to run each) and the evaluate mode runs the same objects on saved
checkpoints and baselines. Evaluators of one gallery share its embeddings
(`Gallery.embeddings` keeps the last backbone's), so running three of them
embeds once. A new metric is a new class here plus its name in
`config.evaluate.evaluators`.

Every evaluator also names the metric keys the report shows (`columns`) and
may keep details of its last run for the report's figures (`details`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sspr_jax.evaluate import backbone_names
from sspr_jax.evaluate import catalogue as catalogue_lib
from sspr_jax.evaluate import classifiers
from sspr_jax.evaluate import embed as embed_lib
from sspr_jax.evaluate import gallery as gallery_lib
from sspr_jax.evaluate import knn
from sspr_jax.evaluate import splits

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Settings:
  """How the evaluators score (config.evaluate, parsed)."""

  image_size: int = 256
  batch_size: int = 64
  scores: tuple[str, ...] = ('cosine',)
  knn_k: int = 20
  heads: tuple[str, ...] = ('mlp',)
  head_splits: tuple[str, ...] = ('standard', 'strict')
  head_preset: str = 'thesis'  # classifiers.HEAD_PRESETS
  head_max_iter: int = 0  # > 0: overrides the preset's cap


class Gallery:
  """A labeled crops source and the embeddings of the last backbone asked.

  Embeddings follow the thesis's transform (shorter side to `image_size`,
  center crop, ImageNet mean/std: `embed.embed`).
  """

  def __init__(self, source, settings: Settings, class_names=()):
    self.source = source
    self.settings = settings
    self.class_names = list(class_names)
    # Another labelled Gallery the 'catalogue' evaluator ranks against.
    self.catalogue: Gallery | None = None
    self._last, self._embeddings = (), None

  def embed(self, backbone: backbone_names.Backbone) -> dict:
    """`embeddings` of a whole Backbone, the time it took logged."""
    start = time.perf_counter()
    emb = self.embeddings(
      backbone.module, backbone.variables, backbone.normalize, backbone.name
    )
    log.info(
      '%s: embedded %d gallery crops in %.1f s.',
      backbone.name,
      len(emb['label']),
      time.perf_counter() - start,
    )
    return emb

  def embeddings(
    self, module, variables, normalize: Callable | None = None, name=''
  ) -> dict:
    """'features', 'features_normalized', 'label', 'origin', 'crop_id'."""
    # Held, not only compared by id: a freed object's id can come back.
    key = (module, variables, normalize)
    if len(self._last) != 3 or any(a is not b for a, b in zip(key, self._last)):
      self._embeddings = None  # Free the last ones first.
      backbone = backbone_names.Backbone(
        name or 'backbone', module, variables, normalize=normalize
      )
      self._embeddings = embed_lib.embed(
        backbone,
        self.source,
        image_size=self.settings.image_size,
        batch_size=self.settings.batch_size,
      )
      self._last = key
    return self._embeddings


class Evaluator:
  """Base: binds a gallery and a backbone module; subclasses define `score`."""

  name = ''

  def __init__(
    self,
    gallery: Gallery,
    module,
    normalize: Callable | None = None,
    backbone_name: str = '',
  ):
    self.gallery = gallery
    self.settings = gallery.settings
    self.module = module
    self.normalize = normalize
    self.backbone_name = backbone_name
    self.details: dict[str, Any] = {}

  @property
  def columns(self) -> tuple[str, ...]:
    """Metric keys of the report table, in order."""
    raise NotImplementedError

  def run(self, variables) -> dict[str, float]:
    emb = self.gallery.embeddings(
      self.module, variables, self.normalize, self.backbone_name
    )
    metrics = self.score(emb)
    return {
      k: (v.item() if isinstance(v, np.generic) else v)
      for k, v in metrics.items()
    }

  def score(self, emb: dict) -> dict:
    raise NotImplementedError


class GalleryMap(Evaluator):
  """Full- and average-gallery mAP and top-1/5 for every score."""

  name = 'gallery_map'

  @property
  def columns(self):
    scores = self.settings.scores
    return tuple(f'full_map/{s}' for s in scores) + tuple(
      f'{m}/{scores[0]}' for m in ('average_map', 'full_top1')
    )

  def score(self, emb):
    return gallery_lib.gallery_metrics(
      emb['features'], emb['label'], self.settings.scores
    )


class StrictKnn(Evaluator):
  """kNN accuracy (cosine, similarity-weighted) on the strict origin split."""

  name = 'knn'
  columns = ('strict_knn_accuracy',)

  def score(self, emb):
    train, test = splits.strict_origin_split(emb['label'], emb['origin'])
    metrics = {'strict_split_sizes': [int(len(train)), int(len(test))]}
    if len(test):
      x = emb['features_normalized']
      metrics['strict_knn_accuracy'] = knn.knn_accuracy(
        x[train],
        emb['label'][train],
        x[test],
        emb['label'][test],
        k=min(self.settings.knn_k, len(train)),
      )
    return metrics


class FewLabel(Evaluator):
  """Few-label heads grid-searched with 5-fold CV on each split.

  Settings by `head_preset` (the thesis's grid to convergence, or 'quick').

  `details[split]` keeps each split's full results (confusion matrices,
  chosen grid points) for the report.
  """

  name = 'few_label'

  @property
  def columns(self):
    s = self.settings
    return tuple(
      f'{split}/{head}/{m}'
      for head in s.heads
      for split in s.head_splits
      for m in ('accuracy', 'map')
    )

  def score(self, emb):
    s, metrics = self.settings, {}
    self.details = {}
    preset = classifiers.HEAD_PRESETS[s.head_preset]
    for split in s.head_splits if s.heads else ():
      result = classifiers.few_label_eval(
        emb['features'],
        emb['label'],
        emb['origin'],
        split=split,
        heads=s.heads,
        mlp_hidden=preset['mlp_hidden'],
        max_iter=s.head_max_iter or preset['max_iter'],
        tol=preset['tol'],
      )
      metrics.update(result['metrics'])
      # Test crops of classes the head never saw count as errors.
      metrics[f'{split}/num_test_unseen'] = result['num_test_unseen']
      self.details[split] = result
    return metrics


class Catalogue(Evaluator):
  """Catalogue-to-shelf recognition: every gallery crop is a query ranked
  against the gallery's `catalogue` set (`catalogue.catalogue_metrics`).
  Classes are matched by name, so the two sets may number them apart."""

  name = 'catalogue'

  @property
  def columns(self):
    score = self.settings.scores[0]
    return tuple(f'catalogue_{m}/{score}' for m in ('top1', 'top5', 'map'))

  def run(self, variables):
    if self.gallery.catalogue is None:
      raise ValueError(
        "The 'catalogue' evaluator needs a catalogue set "
        '(config.evaluate.catalogue).'
      )
    self.catalogue_emb = self.gallery.catalogue.embeddings(
      self.module, variables, self.normalize, self.backbone_name
    )
    return super().run(variables)

  def score(self, emb):
    names = np.asarray(self.gallery.class_names, object)
    catalogue_names = np.asarray(self.gallery.catalogue.class_names, object)
    return catalogue_lib.catalogue_metrics(
      emb['features'],
      names[emb['label']],
      self.catalogue_emb['features'],
      catalogue_names[self.catalogue_emb['label']],
      scores=self.settings.scores,
    )


EVALUATORS: dict[str, type[Evaluator]] = {
  cls.name: cls for cls in (GalleryMap, StrictKnn, FewLabel, Catalogue)
}


def check_names(names: Sequence[str]) -> tuple[str, ...]:
  """The names, each a registered evaluator (ValueError naming the valid)."""
  for name in names:
    if name not in EVALUATORS:
      raise ValueError(
        f'Unknown evaluator {name!r}; valid: {", ".join(sorted(EVALUATORS))}.'
      )
  return tuple(names)


def build(
  names: Sequence[str],
  gallery: Gallery,
  module,
  normalize: Callable | None = None,
  backbone_name: str = '',
) -> list[Evaluator]:
  """The evaluators `names` for one backbone module on `gallery`."""
  return [
    EVALUATORS[name](gallery, module, normalize, backbone_name)
    for name in check_names(names)
  ]
