"""Jigsaw on SKU110K crops, thesis settings (REFERENCE.md).

    python main.py --config configs/jigsaw.py --workdir runs/jigsaw \
        --config.data.source=manual --config.data.sku110k_manual_dir=DIR

ResNet-50 on 9 tiles (resize 256, h-flip, grayscale p=0.66, 3x3 tiles with
21 px jitter -> 64 px), 2,000 maximal-Hamming permutations, per-tile MLP
2048 -> 1000 (BN, ReLU), concat -> 2000; batch 32, 105 epochs, SGD m=0.9
wd 1e-4, linear warm-up 5 epochs then x0.1 steps.
Thesis result: full-gallery cosine mAP 36.83 %, average-gallery 56.22 %.
"""

import ml_collections

from configs import common


def get_config():
  c = common.pretrain_config('jigsaw')
  c.batch_size = 32
  c.num_epochs = 105
  c.input.image_size = 256
  c.optimizer.lr = 0.1
  c.schedule.warmup_epochs = 5.0
  c.schedule.decay_epochs = (30, 60, 90, 100)
  c.jigsaw = ml_collections.ConfigDict(
    dict(
      num_permutations=2000,
      permutation_seed=0,
      grayscale_p=0.66,
      jitter=21,
      tile_dim=1000,
    )
  )
  return c
