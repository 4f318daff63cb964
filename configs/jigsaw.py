"""Jigsaw on SKU110K crops, thesis settings (REFERENCE.md).

    python main.py --config configs/jigsaw.py --workdir runs/jigsaw \
        --config.data.source=manual --config.data.sku110k_manual_dir=DIR

Follows the thesis's VISSL `jigsaw_8gpu_resnet.yaml` on one GPU: ResNet-50 on
9 tiles; the host resizes each crop's shorter side to 256 (aspect kept, the
longer side cut to the central 512 px), the device takes a random 255 crop
inside it, h-flip, grayscale p=0.66, 3x3 tiles with 21 px jitter (64 px);
2,000 maximal-Hamming permutations, per-tile MLP 2048 -> 1000 (BN, ReLU),
concat -> 2000; batch 32, 105 epochs, SGD m=0.9 wd 1e-4 (not on BN and
biases), lr 0.1 x batch/256 (0.0125), linear warm-up 5 epochs, then x0.1 at
epochs 30/60/90/100.
Thesis result: full-gallery cosine mAP 36.83 %, average-gallery 56.22 %.
"""

import ml_collections

from configs import common


def get_config():
  c = common.pretrain_config('jigsaw')
  c.batch_size = 32
  c.num_epochs = 105
  c.input.update(canvas_size=512, shorter_side=256)
  c.optimizer.update(lr=0.1, scale_lr_by_batch=True)
  c.schedule.warmup_epochs = 5.0
  c.schedule.decay_epochs = (30, 60, 90, 100)
  c.jigsaw = ml_collections.ConfigDict(
    dict(
      num_permutations=2000,
      permutation_seed=0,
      crop_size=255,
      grayscale_p=0.66,
      jitter=21,
      tile_dim=1000,
    )
  )
  return c
