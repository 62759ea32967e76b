"""The loss, the optimizer with its per-step learning rates, and the train and eval cells."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.registry import OPTIMIZERS, register_optimizer


@dataclass
class TrainCells:
    """What ``Model`` is built from: the train step (the network with loss and optimizer) and
    the evaluation cell sharing the same network."""

    step: Any  # trainer.engine.step.TrainStep
    eval_network: Any


def learning_rates(cfg: TrainConfig, steps_per_epoch: int) -> np.ndarray:
    """The configured schedule (:func:`trainer.engine.schedules.build_schedule`) as float32,
    one entry per optimizer update plus one: after the last step the optimizer (and ``get_lr``)
    reads index ``global_step`` == total steps, so the last rate is repeated once.

    The schedule is laid out over the training steps (batches); with ``--accumulate-steps K``
    the optimizer updates once every K of them, and update ``u`` takes the rate of step ``u*K``,
    the first batch it accumulates, so the schedule's shape over the epochs is kept.

    Raises:
        ConfigError: the run is too long for a schedule, or its warm-up rounds to the whole run.
    """
    from trainer.engine.schedules import build_schedule

    values = build_schedule(
        cfg.lr_schedule, base_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch,
        warmup_epochs=cfg.warmup_epochs, min_lr=cfg.min_lr, gamma=cfg.lr_gamma,
        step_size=cfg.lr_step_size, milestones=cfg.lr_milestones, power=cfg.lr_power)
    per_step = np.concatenate([values, values[-1:]]).astype(np.float32)
    if cfg.accumulate_steps == 1:
        return per_step
    return np.concatenate([per_step[:-1][::cfg.accumulate_steps], per_step[-1:]])


def check_run_length(cfg: TrainConfig, steps_per_epoch: int) -> None:
    """Refuses a run whose training steps are fewer than one optimizer update needs.

    Raises:
        ConfigError: ``--accumulate-steps`` is larger than the run's training steps.
    """
    from trainer.errors import ConfigError

    total = cfg.epochs * steps_per_epoch
    if cfg.accumulate_steps > total:
        raise ConfigError(
            f"Option 'accumulate_steps' is {cfg.accumulate_steps}, but the run has only {total} "
            f"training step(s) ({cfg.epochs} epoch(s) of {steps_per_epoch}), so the optimizer "
            f"would never update the weights. Use --accumulate-steps {total} or less, or raise "
            "--epochs.")


def schedule_length(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Entries of :func:`learning_rates`: one per optimizer update of the run, plus one."""
    return -(-cfg.epochs * steps_per_epoch // cfg.accumulate_steps) + 1


def parameter_groups(cfg: TrainConfig, params: list) -> list:
    """``params`` as the optimizer takes them: one group, or with ``--no-decay-bias`` the weights
    (more than one dimension) with weight decay and the biases without."""
    if cfg.decay_bias or not cfg.weight_decay:
        return params
    weights = [p for p in params if len(p.shape) > 1]
    biases = [p for p in params if len(p.shape) <= 1]
    return [{"params": weights, "weight_decay": cfg.weight_decay},
            {"params": biases, "weight_decay": 0.0}, {"order_params": params}]


def build_optimizer(cfg: TrainConfig, params: list, lr: np.ndarray, native: str | None = None):
    """The configured optimizer over ``params``, reading its rate from ``lr`` at its step.

    ``--momentum`` is the momentum of ``momentum`` (and of ``sgd`` with ``--nesterov``) and the
    first-moment decay (beta1) of ``adam`` and ``adamw``. ``native``, the native kernels'
    library when the network trains through them, goes to the optimizers registered with
    ``native=True``, which then update every parameter in one operator.
    """
    import mindspore as ms

    rates = ms.Tensor(np.asarray(lr, dtype=np.float32))
    groups = parameter_groups(cfg, params)
    decay = cfg.weight_decay if groups is params else 0.0  # per group otherwise
    make = OPTIMIZERS.get(cfg.optimizer)
    if native and OPTIMIZERS.info(cfg.optimizer, "native", False):
        return make(groups, rates, cfg, decay, native=native)
    return make(groups, rates, cfg, decay)


# The optimizers, by name: each builds MindSpore's optimizer over ``groups`` with the per-step
# ``rates``, the configuration's options and the weight decay ``decay`` (0 when it is per group).
@register_optimizer("momentum", rank=0, nesterov=True, native=True,
                    help="SGD with momentum (--momentum), MindSpore's tutorial's")
def _momentum(groups, rates, cfg: TrainConfig, decay: float, native: str | None = None):
    import mindspore as ms
    from mindspore import nn

    if native:
        from trainer.networks.native.ops import NativeMomentum

        return NativeMomentum(native, groups, rates, cfg.momentum, weight_decay=decay,
                              use_nesterov=cfg.nesterov)
    if cfg.nesterov and ms.get_context("device_target") == "CPU":
        from trainer.engine.nesterov import NesterovMomentum  # CPU ApplyMomentum drops it

        return NesterovMomentum(groups, rates, cfg.momentum, weight_decay=decay)
    return nn.Momentum(groups, rates, cfg.momentum, weight_decay=decay,
                       use_nesterov=cfg.nesterov)


@register_optimizer("sgd", rank=1, nesterov=True, help="plain SGD (with --nesterov, momentum)")
def _sgd(groups, rates, cfg: TrainConfig, decay: float):
    from mindspore import nn

    if cfg.nesterov:
        return nn.SGD(groups, rates, momentum=cfg.momentum, nesterov=True, weight_decay=decay)
    return nn.SGD(groups, rates, weight_decay=decay)


@register_optimizer("adam", rank=2, help="Adam, beta1 --momentum")
def _adam(groups, rates, cfg: TrainConfig, decay: float):
    from mindspore import nn

    return nn.Adam(groups, rates, beta1=cfg.momentum, weight_decay=decay)


@register_optimizer("adamw", rank=3, help="Adam with decoupled weight decay, beta1 --momentum")
def _adamw(groups, rates, cfg: TrainConfig, decay: float):
    from mindspore import nn

    return nn.AdamWeightDecay(groups, rates, beta1=cfg.momentum, weight_decay=decay)


@register_optimizer("rmsprop", rank=4, help="RMSProp, decay 0.9")
def _rmsprop(groups, rates, cfg: TrainConfig, decay: float):
    from mindspore import nn

    return nn.RMSProp(groups, rates, decay=0.9, weight_decay=decay)


@register_optimizer("adagrad", rank=5, help="Adagrad")
def _adagrad(groups, rates, cfg: TrainConfig, decay: float):
    from mindspore import nn

    return nn.Adagrad(groups, learning_rate=rates, weight_decay=decay)


def training_loss(cfg: TrainConfig):
    """The loss training minimises: the tutorial's ``SoftmaxCrossEntropyWithLogits``, or with
    ``--label-smoothing S`` the cross-entropy against targets of ``1 - S + S/C`` for the label
    and ``S/C`` for each other class."""
    from mindspore import nn

    if cfg.label_smoothing > 0:
        return nn.CrossEntropyLoss(reduction="mean", label_smoothing=cfg.label_smoothing)
    return nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")


def build_train_cells(cfg: TrainConfig, network, lr: np.ndarray) -> TrainCells:
    """``TrainStep`` (the training loss, the configured optimizer and train-step options, at
    ``--amp-level`` with ``--loss-scale``) and the evaluation cell around the same ``network``;
    validation always reports the plain cross-entropy, so its loss compares across recipes, and
    runs in float32 (see :mod:`trainer.engine.amp`).

    Raises:
        ConfigError: the network cannot be converted to the mixed-precision level.
    """
    from mindspore import nn

    from trainer.engine import amp
    from trainer.engine.step import TrainStep

    trained = amp.mixed_precision(network, cfg.amp_level)
    native = None
    if getattr(network, "native", False):  # still, after the mixed-precision conversion
        from trainer.networks.native import use_native

        native = use_native(cfg.kernels)
    optimizer = build_optimizer(cfg, network.trainable_params(), lr, native)
    counts = None
    if native:
        from trainer.networks.native.ops import NativeStepCounts

        counts = NativeStepCounts(native)
    step = TrainStep(trained, training_loss(cfg), optimizer, clip_norm=cfg.clip_grad_norm,
                     clip_value=cfg.clip_grad_value, accumulate=cfg.accumulate_steps,
                     ema_decay=cfg.ema_decay, loss_scaler=amp.loss_scaler(cfg), counts=counts)
    amp.announce(cfg)
    plain = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    evaluated = network
    if getattr(network, "native", False) and hasattr(network, "native_forward"):
        from trainer.networks.native.ops import NativeInference

        evaluated = NativeInference(network)  # validation through the same kernels
    return TrainCells(step, nn.WithEvalCell(evaluated, plain))
