"""MoCo v2 on SKU110K crops, thesis settings (REFERENCE.md).

    python main.py --config configs/moco.py --workdir runs/moco \
        --config.data.source=manual --config.data.sku110k_manual_dir=DIR

Follows the thesis's VISSL `moco_1node_resnet.yaml` on one GPU: ResNet-50
(zero-init last BN gamma), native crops, 2 views (RandomResizedCrop 224
inside each crop, aspect kept; colour strength 0.5, blur p=0.5, h-flip), head
2048 -> 2048 -> 128, queue 65,536, key momentum 0.999, T=0.2; batch 64, 100
epochs, SGD nesterov m=0.9, wd 1e-4 on every parameter (VISSL's
`regularize_bn: True`), lr 0.03, x0.1 at epochs 60 and 80.
Deliberate difference: shuffle BN over `moco.shuffle_bn_groups` groups of the
batch (VISSL ran one GPU, so one group: the BatchNorm shortcut MoCo's shuffle
exists to close).
Thesis result (batch 64): full-gallery cosine mAP 56.82 %, average 79.33 %.
"""

from configs import common


def get_config():
  c = common.pretrain_config('moco')
  c.batch_size = 64
  c.num_epochs = 100
  c.model.zero_init_residual = True
  c.optimizer.update(lr=0.03, nesterov=True, decay_bn_and_bias=True)
  c.schedule.decay_epochs = (60, 80)
  c.moco = common.contrastive_settings(color_strength=0.5)
  c.moco.update(dict(queue_size=65536, momentum=0.999, temperature=0.2))
  # Shuffle BN over 2 groups of 32, MoCo's 32 images per GPU (moco.py).
  c.moco.shuffle_bn_groups = 2
  return c
