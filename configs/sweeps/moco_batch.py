"""MoCo v2 on the quick start at batch 32, 64 and 128, lr scaled linearly.

    python -m sspr_jax.sweeps.run --sweep configs/sweeps/moco_batch.py \
        --workdir /tmp/sspr_moco_batch

Runs `configs/quickstart.py:moco` three times into WORKDIR/batch_size=<B>,
then writes WORKDIR/report.md with one table over the runs and their
mAP-per-checkpoint curves in one figure. The quick start fixes lr at 0.05 for
batch 64; here `optimizer.scale_lr_by_batch` scales lr 0.2 by B/256, which
keeps 0.05 at batch 64 and gives 0.025 at 32 and 0.1 at 128 (linear scaling).
Epochs stay 32, so smaller batches take more steps. About 6 minutes a run on
2 CPU cores.
"""

from configs import common


def get_sweep():
  base = 'configs/quickstart.py:moco'
  runs = common.grid(batch_size=[32, 64, 128])
  # Applied to every run, left out of the run names.
  fixed = {'optimizer.scale_lr_by_batch': True, 'optimizer.lr': 0.2}
  return base, runs, fixed
