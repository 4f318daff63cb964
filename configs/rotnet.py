"""RotNet on SKU110K crops, thesis settings (REFERENCE.md).

    python main.py --config configs/rotnet.py --workdir runs/rotnet \
        --config.data.source=manual --config.data.sku110k_manual_dir=DIR

Follows the thesis's VISSL `rotnet_8gpu_resnet.yaml` on one GPU: ResNet-50,
native crops, RandomResizedCrop 224 inside each crop (aspect kept) + h-flip,
one random rotation of 0/90/180/270 per image, head 2048 -> 4; batch 32, 105
epochs, SGD m=0.9 wd 1e-4 (not on BN and biases), lr 0.1 x batch/256 (VISSL's
auto scaling: 0.0125), x0.1 at epochs 30/60/90/100.
Deliberate difference: the flip comes before the rotation (VISSL rotates the
raw crop first), so a label always names the turn of the upright product.
Thesis result: full-gallery cosine mAP 43.31 %, average-gallery 66.57 %.
"""

import ml_collections

from configs import common


def get_config():
  c = common.pretrain_config('rotnet')
  c.batch_size = 32
  c.num_epochs = 105
  c.optimizer.update(lr=0.1, scale_lr_by_batch=True)
  c.schedule.decay_epochs = (30, 60, 90, 100)
  c.rotnet = ml_collections.ConfigDict(
    dict(view_size=224, crop_scale=(0.08, 1.0), rotations_per_image=1)
  )
  return c
