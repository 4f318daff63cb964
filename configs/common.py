"""Config pieces shared by the experiment configs."""

import ml_collections


def data_config() -> ml_collections.ConfigDict:
  """Where the crops come from and where the TFDS datasets are written.

  `source='synthetic'` generates the embedded shelf and rack photos into
  WORKDIR/raw (SKU110K archive layout and Pascal VOC racks); `source='manual'`
  reads `sku110k_manual_dir` (holding `SKU110K_fixed.tar.gz`, an extracted
  `SKU110K_fixed/` or the YOLO layout) and `rack_manual_dir` (VOC XML + photos).
  """
  c = ml_collections.ConfigDict()
  c.source = 'synthetic'
  c.seed = 0
  # Synthetic set sizes (ignored for source='manual').
  c.shelf_photos = ml_collections.ConfigDict({'train': 24, 'val': 4, 'test': 8})
  c.rack_photos = 12
  c.num_classes = 60
  c.sku110k_manual_dir = ''
  c.rack_manual_dir = ''
  # Pre-training on any folder of images (config.input.dataset='image_folder').
  c.image_folder_dir = ''
  # A clone of github.com/marcusklasson/GroceryStoreDataset
  # (config.input.dataset='grocery_store').
  c.grocery_store_manual_dir = ''
  # TFDS builder configs: stored crop size ('native' keeps the thesis's crops).
  c.sku110k_config = 'native'
  c.rack_config = 'native'
  c.image_folder_config = 'native'
  c.grocery_store_config = 'native'
  c.data_dir = ''  # '' -> WORKDIR/tfds
  return c


def pretrain_config(objective: str) -> ml_collections.ConfigDict:
  """Fields every pre-training config has; thesis settings go on top."""
  c = ml_collections.ConfigDict()
  c.mode = 'pretrain'
  c.objective = objective
  c.seed = 0
  c.data = data_config()
  c.input = ml_collections.ConfigDict(
    dict(
      dataset='sku110k_crops',  # or 'image_folder' (config.data.image_folder_dir)
      split='train',
      # Host: each crop keeps its aspect ratio in a canvas of this side (the
      # stored resolution unless it does not fit); the views are cut on
      # device inside the crop's own region.
      canvas_size=448,
      shorter_side=0,  # > 0: scale the shorter side to this first (Jigsaw)
      worker_count=0,  # grain worker processes for decode/resize
    )
  )
  c.model = ml_collections.ConfigDict(
    dict(
      backbone='resnet50',
      width=0,  # first-stage filters; 0: the architecture's (64)
      stem='imagenet',  # or 'cifar': 3x3 stride-1 conv, no max-pool
      zero_init_residual=False,
      dtype='float32',
      # Start pre-training from trained weights of the same architecture:
      # a workdir (its latest checkpoint), RUN/checkpoints/STEP,
      # 'imagenet_efficientnet_lite0' or 'imagenet_resnet50:/path.pth'.
      init_from='',
    )
  )
  c.batch_size = 64  # global, over all devices and hosts
  # Split parameters, optimizer and extra state over the devices (FSDP /
  # ZeRO-3 style) instead of replicating them: less memory per chip.
  c.shard_state = False
  c.num_epochs = 100
  c.total_steps = 0  # > 0 overrides num_epochs
  c.optimizer = ml_collections.ConfigDict(
    dict(
      name='sgd',
      lr=0.1,
      momentum=0.9,
      nesterov=False,
      weight_decay=1e-4,
      scale_lr_by_batch=False,
      decay_bn_and_bias=False,
      trust_coefficient=0.001,
    )
  )
  c.schedule = ml_collections.ConfigDict(
    dict(
      name='step',
      warmup_epochs=0.0,
      warmup_fraction=0.0,
      decay_epochs=(30, 60, 90),
      decay_factor=0.1,
    )
  )
  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.eval_every_steps = 0  # > 0: gallery mAP + kNN on rack_crops every N steps
  c.evaluate = evaluate_config()
  return c


def contrastive_settings(**overrides) -> ml_collections.ConfigDict:
  """MoCo v2 / SimCLR view and head settings (REFERENCE.md)."""
  s = ml_collections.ConfigDict(
    dict(
      view_size=224,
      crop_scale=(0.08, 1.0),
      color_strength=0.5,
      grayscale_p=0.2,  # random grayscale of the colour distortion
      blur_p=0.5,
      hidden_dims=(2048,),
      out_dim=128,
    )
  )
  s.update(overrides)
  return s


def evaluate_config(image_size: int = 256) -> ml_collections.ConfigDict:
  """Gallery evaluation on `rack_crops` (thesis: shorter side 256, crop 256)."""
  return ml_collections.ConfigDict(
    dict(
      all_steps=False,  # every saved checkpoint of a workdir, else the latest
      # 'random', 'pixels[:SIDE]', 'imagenet_efficientnet_lite0',
      # 'imagenet_resnet50:/path.pth' (sspr_jax/evaluate/backbone_names.py).
      baselines=('random',),
      # Evaluators (sspr_jax/evaluate/evaluators.py) of the evaluate mode, and
      # those run every config.eval_every_steps during pre-training.
      evaluators=('gallery_map', 'knn', 'few_label'),
      # The 'catalogue' evaluator's set, e.g. 'grocery_store:iconic': every
      # gallery crop is ranked against it (catalogue-to-shelf top-1/5, mAP).
      catalogue='',
      periodic=('gallery_map', 'knn'),
      image_size=image_size,
      batch_size=64,
      scores=('cosine', 'inner_product', 'euclidean', 'euclidean_normalized'),
      knn_k=20,
      heads=('mlp',),  # few-label heads: 'linear', 'mlp', 'svc'
      head_splits=('standard', 'strict'),
      # 'thesis': its MLP grid, each fit to scikit-learn's stopping rule
      # (L-BFGS, tol 1e-4, at most 10,000 iterations); 'quick': one MLP
      # (32 hidden), at most 300 iterations (sspr_jax/evaluate/classifiers.py).
      head_preset='thesis',
      head_max_iter=0,  # > 0: caps every fit's L-BFGS iterations
    )
  )


def grid(**axes) -> list[dict]:
  """Every combination of the axes' values, the first axis slowest.

  `grid(objective=['simclr', 'moco'], num_epochs=[8, 32])` -> 4 override
  dicts {'objective': ..., 'num_epochs': ...}; keys are config field paths
  ('optimizer.lr'), as in a sweep's runs (configs/sweeps/).
  """
  runs = [{}]
  for key, values in axes.items():
    if isinstance(values, (str, bytes)) or not hasattr(values, '__iter__'):
      raise TypeError(
        f'grid({key}=...) takes a list of values, got {values!r}.'
      )
    runs = [dict(run, **{key: v}) for run in runs for v in values]
  return runs
