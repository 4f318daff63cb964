"""Recognise the products on new shelf photos with a backbone and a gallery.

    python main.py --config configs/recognize.py --workdir /tmp/sspr_recognize \
        --config.recognize.photos=/data/new_shelves \
        --config.recognize.backbone=/tmp/sspr_quickstart \
        --config.recognize.gallery=/tmp/sspr_quickstart/tfds

`photos`: shelf photos with boxes (Pascal VOC XML beside them, whose names
are the true products; the SKU110K layout images/ + annotations/*.csv; or
YOLO images/{split}/ + labels/{split}/). `backbone`: a pre-training workdir,
a step folder RUN/checkpoints/STEP, or a baseline ('random', 'pixels:16',
'imagenet_resnet50:/path.pth', ...). `gallery`: the labeled products, as the
evaluate mode's `config.dataset` ('synthetic', a folder of labeled rack
photos, or a TFDS data dir with rack_crops/). `method`: 'prototype' (nearest
class prototype, cosine) or 'knn' (`knn_k` nearest gallery crops vote,
similarity-weighted); `top_k` names per box; boxes with a side below
`min_box_side` pixels (8) are skipped and counted. Crops are embedded at
the backbone run's evaluation size (its `evaluate.image_size`: 64 for the
quick start) unless `image_size` names another (a warning names both); a
baseline at `evaluate.image_size`.

Writes WORKDIR/recognize/: predictions.csv and predictions.json (per box:
photo, x1,y1,x2,y2, top-k names with scores, true name), annotated/<photo>.jpg
(boxes and top-1 names, green right, red wrong with `-> true name`, amber
no true name, a legend below; labels never overlap),
summary.json and recognize.md (top-1 / top-k accuracy and the most confused
pairs where the photos carry names; counts of clipped and skipped boxes).
The gallery's embeddings are cached in RUN/gallery_cache/ (a baseline's in
WORKDIR/recognize/gallery_cache/) and reused by the next run.

Expected, on two new rack photos of the quick start's 60 products (photos 12
and 13 of `synthetic.generate_racks('/tmp/new', seed=0, num_photos=14)`, 71
boxes) against the quick start's gallery at its input size
(`--config.recognize.gallery=/tmp/sspr_quickstart/tfds
--config.evaluate.image_size=64 --config.recognize.knn_k=5`; 2 CPU cores,
about 7 s a run): top-1 / top-5 accuracy of the SimCLR checkpoint 35.2 /
98.6 % (prototype) and 25.4 / 84.5 % (knn), raw 16x16 pixels 46.5 / 93.0 %
and 42.3 / 85.9 %; chance is 1.7 %. The confusions are variants of one
brand (same artwork, another flavour text). Measured 2026-12-01.
"""

import ml_collections

from configs import common


def get_config():
  c = ml_collections.ConfigDict()
  c.mode = 'recognize'
  c.seed = 0
  c.recognize = ml_collections.ConfigDict(
    dict(
      photos='',  # required
      backbone='',  # '' = WORKDIR's latest checkpoint
      gallery='',  # required
      method='prototype',  # or 'knn'
      top_k=5,
      knn_k=20,
      min_box_side=8,  # boxes with a smaller side are skipped and counted
      image_size=0,  # 0: the backbone run's evaluation size
    )
  )
  c.data = common.data_config()
  # Architecture of the random baseline.
  c.model = ml_collections.ConfigDict(dict(backbone='resnet50'))
  c.evaluate = common.evaluate_config()
  return c
