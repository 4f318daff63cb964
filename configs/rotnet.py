"""RotNet on SKU110K crops, thesis settings (REFERENCE.md).

    python main.py --config configs/rotnet.py --workdir runs/rotnet \
        --config.data.source=manual --config.data.sku110k_manual_dir=DIR

ResNet-50, 4 rotations of RandomResizedCrop 224 + h-flip, head 2048 -> 4,
batch 32, 105 epochs, SGD m=0.9 wd 1e-4, x0.1 at epochs 30/60/90/100.
Thesis result: full-gallery cosine mAP 43.31 %, average-gallery 66.57 %.
"""

import ml_collections

from configs import common


def get_config():
  c = common.pretrain_config('rotnet')
  c.batch_size = 32
  c.num_epochs = 105
  c.optimizer.lr = 0.1
  c.schedule.decay_epochs = (30, 60, 90, 100)
  c.rotnet = ml_collections.ConfigDict(
    dict(view_size=224, crop_scale=(0.08, 1.0))
  )
  return c
