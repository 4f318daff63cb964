"""SimCLR on SKU110K crops, thesis settings (REFERENCE.md).

    python main.py --config configs/simclr.py --workdir runs/simclr \
        --config.data.source=manual --config.data.sku110k_manual_dir=DIR

Follows the thesis's VISSL `simclr_8node_resnet.yaml` on one GPU: ResNet-50,
native crops, 2 views (RandomResizedCrop 224 inside each crop, aspect kept;
colour strength 1.0, blur p=0.5, h-flip), head 2048 -> 2048 -> 128, NT-Xent
T=0.1 over the global batch, global (synchronised) BN; batch 64, 100 epochs,
LARS (trust 0.001) wd 1e-6 (not on BN and biases), lr 0.3 x batch/256, 10 %
warm-up then cosine to 0.
Thesis result: full-gallery cosine mAP 52.96 %, average-gallery 74.80 %.
"""

from configs import common


def get_config():
  c = common.pretrain_config('simclr')
  c.batch_size = 64
  c.num_epochs = 100
  c.optimizer.update(
    name='lars',
    lr=0.3,
    scale_lr_by_batch=True,
    weight_decay=1e-6,
    momentum=0.9,
  )
  c.schedule.update(name='cosine', warmup_fraction=0.1)
  c.simclr = common.contrastive_settings(color_strength=1.0)
  c.simclr.temperature = 0.1
  return c
