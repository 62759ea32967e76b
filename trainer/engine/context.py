"""MindSpore's process-wide settings for a run: mode, device, data-parallel cluster and seeds."""

from __future__ import annotations

import logging

from trainer.config import TrainConfig
from trainer.device import set_mode_and_device
from trainer.engine import distributed
from trainer.logs import setup_logging


def setup_run_context(cfg: TrainConfig) -> distributed.Cluster:
    """Checks the launch, sets mode and device, joins msrun's cluster and seeds every generator.

    Every worker of a data-parallel run uses the same seeds: identical initial weights, and one
    shuffled order of the training set that the shards partition.

    Raises:
        ConfigError: a launch that does not fit ``--distributed``, or an unusable device.
    """
    import mindspore as ms
    import mindspore.dataset as ds
    import numpy as np

    distributed.check_launch(cfg.distributed)
    set_mode_and_device(cfg.mode, cfg.device)
    cluster = distributed.setup() if cfg.distributed else distributed.current()
    if not cluster.main:
        setup_logging(logging.WARNING, prefix=f"[worker {cluster.rank}] ")
    ms.set_seed(cfg.seed)
    ds.config.set_seed(cfg.seed)
    np.random.seed(cfg.seed)
    return cluster
