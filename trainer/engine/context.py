"""MindSpore's process-wide settings for a run: mode, device, data-parallel cluster and seeds."""

from __future__ import annotations

import logging
import os

from trainer.config import TrainConfig
from trainer.engine import distributed
from trainer.errors import ConfigError
from trainer.logs import setup_logging


def quiet_compiler_files() -> None:
    """Sends the graph dumps MindSpore writes when a compilation fails (``rank_0/om/...``) to the
    tool's cache folder instead of the current folder, unless ``MS_OM_PATH`` is set already."""
    from trainer.data.splits import cache_root

    os.environ.setdefault("MS_OM_PATH", str(cache_root() / "mindspore-om"))


def set_mode_and_device(mode: str, device: str) -> None:
    """Graph or PyNative mode on ``device``; the device can be chosen once per process.

    Raises:
        ConfigError: the device cannot be used by this MindSpore build.
    """
    import mindspore as ms

    quiet_compiler_files()
    try:
        ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
        if ms.get_context("device_target") != device:
            ms.set_device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"Device {device!r} cannot be used here ({str(exc).splitlines()[0]}). "
                          "This MindSpore build runs on CPU; use --device CPU, or install the "
                          "MindSpore package for your accelerator.") from None


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
