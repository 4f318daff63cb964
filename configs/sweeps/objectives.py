"""SimCLR and MoCo v2 on the quick start, each for 16 and 32 epochs.

    python -m sspr_jax.sweeps.run --sweep configs/sweeps/objectives.py \
        --workdir /tmp/sspr_objectives

Four runs into WORKDIR/<objective>+num_epochs=<E>, then WORKDIR/report.md
(one table, the mAP-per-checkpoint curves of all runs in one figure). The
objective is the quick start's config argument (each has its own section and
lr), hence the `config` key. About 3 to 6 minutes a run on 2 CPU cores.
"""

from configs import common


def get_sweep():
  return 'configs/quickstart.py', common.grid(
    config=['configs/quickstart.py:simclr', 'configs/quickstart.py:moco'],
    num_epochs=[16, 32],
  )
