"""The loss, the optimizer with its per-step learning rates, and the train and eval cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.config import TrainConfig


@dataclass
class TrainCells:
    """What ``Model`` is built from: the train step (the network with loss and optimizer) and
    the evaluation cell sharing the same network."""

    step: Any  # trainer.engine.step.TrainStep
    eval_network: Any


def learning_rates(cfg: TrainConfig, steps_per_epoch: int) -> np.ndarray:
    """The configured schedule as float32, one entry per step plus one (see
    :func:`trainer.engine.schedules.schedule_array`)."""
    from trainer.engine.schedules import schedule_array

    return schedule_array(
        cfg.lr_schedule, base_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
        warmup_epochs=cfg.warmup_epochs, min_lr=cfg.min_lr, gamma=cfg.lr_gamma,
        step_size=cfg.lr_step_size, milestones=cfg.lr_milestones, power=cfg.lr_power)


def build_optimizer(cfg: TrainConfig, params: list, lr: np.ndarray):
    """The configured optimizer over ``params``, reading its rate from ``lr`` at its step."""
    import mindspore as ms
    from mindspore import nn

    rates = ms.Tensor(np.asarray(lr, dtype=np.float32))
    if cfg.optimizer == "momentum":
        return nn.Momentum(params, rates, cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return nn.SGD(params, rates, weight_decay=cfg.weight_decay)
    return nn.Adam(params, rates, beta1=cfg.momentum, weight_decay=cfg.weight_decay)


def build_train_cells(cfg: TrainConfig, network, lr: np.ndarray) -> TrainCells:
    """``TrainStep`` (loss ``SoftmaxCrossEntropyWithLogits``, the configured optimizer) and the
    evaluation cell around the same ``network``."""
    from mindspore import nn

    from trainer.engine.step import TrainStep

    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    optimizer = build_optimizer(cfg, network.trainable_params(), lr)
    return TrainCells(TrainStep(network, loss_fn, optimizer), nn.WithEvalCell(network, loss_fn))
