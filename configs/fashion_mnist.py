"""Self-supervised pre-training on Fashion-MNIST (28 px grayscale photos).

    python main.py --config configs/fashion_mnist.py:simclr \
        --workdir runs/fmnist_simclr --config.data.image_folder_dir=FOLDER

The argument after ':' is the objective: moco, simclr, rotnet or jigsaw.
FOLDER holds the 60,000 training images as PNG files (no labels);
`benchmarks/fashion_mnist.py` writes them, pre-trains every objective with
this config and evaluates the backbones (gallery mAP, kNN, linear head).

Follows the CIFAR-sized setups of the papers (MoCo's CIFAR-10 demo, SimCLR's
CIFAR experiments) scaled down to 28 px: ResNet-18 with the CIFAR stem (3x3
stride 1, no max-pool) at a quarter of the width (16 first-stage filters,
128-d features), images at their stored 28 px (`input.canvas_size=28`),
batch 256, SGD (momentum 0.9, wd 5e-4 on kernels only) with a 5 % linear
warm-up and a cosine decay to 0, 100 epochs (the benchmark sets its own).
MoCo v2 / SimCLR views: RandomResizedCrop 28 with scale (0.2, 1), h-flip,
the standard colour distortion at strength 0.5 (on grayscale photos only
brightness and contrast change anything), no blur (a blur kernel of ~10 %
of 28 px is 3 px: it would erase the texture that tells the classes apart).
Jigsaw sees 3x upscaled images: 28 px are too few for a 3x3 puzzle, so the
host resizes each image to 72 px and the tiles are 20 px (24 px cells,
jitter 4).
"""

import ml_collections

from configs import common

OBJECTIVES = ('moco', 'simclr', 'rotnet', 'jigsaw')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  objective = (arg or '').strip()
  if objective not in OBJECTIVES:
    raise ValueError(
      f'configs/fashion_mnist.py needs the objective after a colon, e.g. '
      f'configs/fashion_mnist.py:simclr; valid: {", ".join(OBJECTIVES)} '
      f'(got {arg!r}).'
    )
  c = common.pretrain_config(objective)
  c.input.update(dataset='image_folder', canvas_size=28)
  c.model.update(backbone='resnet18', width=16, stem='cifar')
  c.batch_size = 256
  c.num_epochs = 100
  # The learning rates scale with the batch (x batch/256): the values below
  # are those at batch 256.
  c.optimizer.update(
    name='sgd',
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,  # CIFAR-sized ResNets' usual value.
    scale_lr_by_batch=True,
  )
  # A warm-up in epochs would eat a short run; 5 % of the steps fits any
  # budget the benchmark gives.
  c.schedule.update(name='cosine', warmup_fraction=0.05)
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.evaluate.image_size = 28

  contrastive = dict(
    view_size=28,
    crop_scale=(0.2, 1.0),
    color_strength=0.5,
    blur_p=0.0,
    hidden_dims=(512,),  # Wider than the 128-d features, as CIFAR heads.
    out_dim=128,
  )
  if objective == 'moco':
    # MoCo's CIFAR-10 demo: lr 0.06, queue 4096, key momentum 0.99 (a 0.999
    # EMA moves too slowly for a run of a few thousand steps). T=0.2 (MoCo
    # v2). Shuffle BN over 4 groups of the batch (ignored until the trainer
    # implements the field).
    c.optimizer.lr = 0.06
    c.moco = common.contrastive_settings(**contrastive)
    c.moco.update(
      dict(
        queue_size=4096,  # A multiple of the batch: whole batches enqueue.
        momentum=0.99,
        temperature=0.2,
        shuffle_bn_groups=4,
      )
    )
  elif objective == 'simclr':
    # SGD rather than LARS: LARS's trust ratio (0.001) pays off for
    # batches of thousands; at 256, plain SGD at MoCo's rate trains faster
    # in a short run. T=0.2: CIFAR-sized SimCLR runs use 0.2-0.5 (0.1 suits
    # ImageNet's large batches), and MoCo's here is the same.
    c.optimizer.lr = 0.06
    c.simclr = common.contrastive_settings(**contrastive)
    c.simclr.temperature = 0.2
  elif objective == 'rotnet':
    # All four rotations of every image (the RotNet paper): 4 x 256 views a
    # step, every image seen at every angle. Milder crops than the
    # contrastive views: the task needs the object's orientation cues.
    c.optimizer.lr = 0.1
    c.rotnet = ml_collections.ConfigDict(
      dict(view_size=28, crop_scale=(0.5, 1.0), rotations_per_image=4)
    )
  else:  # jigsaw
    # 3x upscaled (see the module docstring): 72 px canvas, the crop is the
    # whole image, 3x3 cells of 24 px, 20 px tiles at up to 4 px jitter.
    # 100 permutations and a 128-d tile layer: the 2,000 / 1,000 of the
    # ImageNet setup would be a far harder task than 20 px tiles can carry.
    c.optimizer.lr = 0.1
    c.input.update(canvas_size=72, shorter_side=72)
    c.jigsaw = ml_collections.ConfigDict(
      dict(
        num_permutations=100,
        permutation_seed=0,
        crop_size=72,
        grayscale_p=0.66,  # A no-op on grayscale photos; kept as the thesis.
        jitter=4,
        tile_dim=128,
      )
    )
  return c
