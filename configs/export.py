"""Export a backbone for serving: one program, uint8 crops in, embeddings out.

    python main.py --config configs/export.py --workdir /tmp/sspr_export \
        --config.export.backbone=/tmp/sspr_quickstart

`backbone`: a pre-training workdir (its latest checkpoint), a step folder
RUN/checkpoints/STEP, or a baseline ('random', 'pixels:16',
'imagenet_efficientnet_lite0', ...); '' is WORKDIR's latest checkpoint.
`image_size`: 0 takes the run's evaluation size (its
`config.evaluate.image_size`: 64 for the quick start). `input_size`: the
crop size the program takes; 0 is the image size (crops resized and
centre-cropped on the host, as the evaluate mode does), another size is
resized inside the program.

Writes WORKDIR/export/embedding.stablehlo (`jax.export`, any batch size:
`jax.export.deserialize(open(path, 'rb').read()).call(crops)` with jax
alone) and model_card.json (architecture, input, normalisation, output
size, run, step and its gallery mAP). On the quick start's checkpoint
(2026-12-08, 2 CPU cores, seconds): uint8 [batch, 64, 64, 3] in, 64-d
embeddings out, equal to the evaluate mode's to 1e-5
(sspr_jax/modes/export_test.py); the card gives step 1088 and its
full-gallery cosine mAP from the run's metrics.json (0.4116).
"""

import ml_collections

from configs import common


def get_config():
  c = ml_collections.ConfigDict()
  c.mode = 'export'
  c.seed = 0
  c.export = ml_collections.ConfigDict(
    dict(backbone='', image_size=0, input_size=0)
  )
  # Architecture of the random baseline.
  c.model = ml_collections.ConfigDict(dict(backbone='resnet50'))
  c.evaluate = common.evaluate_config()  # image_size of a baseline
  return c
