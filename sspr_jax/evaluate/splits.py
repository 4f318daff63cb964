"""Train/test splits of the labeled gallery for few-label classifiers (REFERENCE.md).

* ``strict_origin_split``: per class, the test crops all come from ONE origin
  photo that contributes no train crop of that class, so a classifier cannot
  match a test crop to a near-duplicate of the same photo.
* ``standard_split``: random 80/20, the same sets as scikit-learn
  ``train_test_split(np.arange(n), test_size=0.2, random_state=seed)``.

Both return sorted int64 index arrays ``(train_idx, test_idx)``.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def strict_origin_split(labels, origins) -> tuple[np.ndarray, np.ndarray]:
  """Strict split by origin photo.

  For each class with n crops: group its crops by origin photo; a class
  spanning fewer than 2 photos is excluded entirely; otherwise the test part
  is the crops of the one photo whose crop count is closest to
  ``max(1, int(0.2 * n))`` and the rest of the class is train.  Ties between
  photos go to the photo whose first crop of this class comes first in
  dataset order (what Python's ``min`` over photos listed in dataset order
  gives).  Deterministic; no seed.
  """
  labels = np.asarray(labels)
  origins = np.asarray(origins)
  if labels.ndim != 1 or origins.shape != labels.shape:
    raise ValueError(
      f'labels and origins must be 1-d of equal length, got {labels.shape} and {origins.shape}'
    )
  _, origin_ids = np.unique(origins, return_inverse=True)
  train, test = [], []
  for cls in np.unique(labels):
    idx = np.flatnonzero(labels == cls)
    # Photos in order of their first crop of this class.
    photos, first, counts = np.unique(
      origin_ids[idx], return_index=True, return_counts=True
    )
    if len(photos) < 2:
      continue
    order = np.argsort(first, kind='stable')
    photos, counts = photos[order], counts[order]
    target = max(1, int(0.2 * len(idx)))
    test_photo = photos[
      np.argmin(np.abs(counts - target))
    ]  # argmin: first of ties
    in_test = origin_ids[idx] == test_photo
    test.append(idx[in_test])
    train.append(idx[~in_test])
  empty = np.zeros(0, np.int64)
  return (
    np.sort(np.concatenate(train)).astype(np.int64) if train else empty,
    np.sort(np.concatenate(test)).astype(np.int64) if test else empty,
  )


def standard_split(
  labels, *, test_size: float = 0.2, seed: int = 0, stratify: bool = False
) -> tuple[np.ndarray, np.ndarray]:
  """Random split, e.g. 1,643 crops -> 1,314 train / 329 test.

  With ``stratify=True`` every class needs >= 2 crops (scikit-learn's rule).
  """
  labels = np.asarray(labels)
  if labels.ndim != 1 or not len(labels):
    raise ValueError(
      f'labels must be a non-empty 1-d array, got shape {labels.shape}: nothing to split'
    )
  train, test = train_test_split(
    np.arange(len(labels)),
    test_size=test_size,
    random_state=seed,
    stratify=labels if stratify else None,
  )
  return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)
