"""Learning-rate schedules as pure functions: one learning rate per training step.

A schedule is registered by name with ``@register_schedule`` and reached through one entry
point, :func:`build_schedule`, which lays it out over a run as a float64 array with one entry
per step. The trainer appends the last rate once more (the optimizer reads index
``global_step``, also after the last step) and hands the array to the optimizer as float32;
nothing runs on the host per step.

The settings are validated once, where the options are declared
(:meth:`trainer.config.TrainConfig.validate`, with the facts each schedule declares here:
``floor`` for a schedule that decays to ``--min-lr``, ``warmup=False`` for one that warms up by
itself). The functions here compute and trust their arguments; :func:`build_schedule` checks
only what depends on the data's size: the run's length and a warm-up that rounds to the whole
run.

Conventions shared by all schedules:

* Step ``i`` belongs to epoch ``i // steps_per_epoch``. Epoch-based schedules (``step``,
  ``multistep``, ``exponential``) change value only at epoch boundaries; ``cosine``,
  ``polynomial`` and ``onecycle`` change every step.
* Decaying schedules reach their floor on the last step: ``cosine`` and ``polynomial`` end
  exactly at ``min_lr``, ``onecycle`` at ``max_lr / (div_factor * final_div_factor)``.
* The warm-up (``warmup_epochs``) is a linear ramp from ``warmup_start_lr`` placed *before* the
  main schedule, which is computed over the steps that remain: the ramp arrives at ``base_lr``
  on the first step after it, and ``step_size`` and ``milestones`` count epochs from its end.

A schedule is a pure, deterministic function of ``(name, parameters, epochs, steps_per_epoch)``.
Building it again with a larger ``epochs`` (training longer after a resume) gives a different
schedule for a decaying shape: a cosine stretched over 20 epochs is not the 10-epoch cosine
followed by more steps. Deciding which schedule a resumed run follows is the trainer's business.

Example:
    >>> lrs = build_schedule("cosine", base_lr=0.1, epochs=2, steps_per_epoch=3)
    >>> len(lrs), float(lrs[0]), float(lrs[-1])
    (6, 0.1, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from trainer.errors import ConfigError
from trainer.registry import SCHEDULES as REGISTRY
from trainer.registry import register_schedule


def _steps(total_steps: int) -> np.ndarray:
    return np.arange(total_steps, dtype=np.int64)


def _fraction(total_steps: int) -> np.ndarray:
    """Position of each step in ``[0, 1]``: 0 on the first step, 1 on the last."""
    if total_steps == 1:
        return np.zeros(1, dtype=np.float64)
    return _steps(total_steps) / float(total_steps - 1)


@register_schedule("constant", rank=0, help="the base rate throughout")
def _constant(base_lr: float, total_steps: int) -> np.ndarray:
    return np.full(total_steps, float(base_lr), dtype=np.float64)


@register_schedule("step", rank=1, help="times --lr-gamma every --lr-step-size epochs")
def _step(
    base_lr: float, total_steps: int, steps_per_epoch: int, step_size: int, gamma: float
) -> np.ndarray:
    """``base_lr * gamma ** (epoch // step_size)`` (like torch StepLR)."""
    epochs = _steps(total_steps) // int(steps_per_epoch)
    return float(base_lr) * float(gamma) ** (epochs // int(step_size)).astype(np.float64)


@register_schedule("multistep", rank=2, help="times --lr-gamma at each of --lr-milestones")
def _multistep(
    base_lr: float,
    total_steps: int,
    steps_per_epoch: int,
    milestones: Sequence[int],
    gamma: float,
) -> np.ndarray:
    """One more factor ``gamma`` from each milestone epoch on (like torch MultiStepLR);
    milestones beyond the run have no effect."""
    bounds = np.asarray([int(m) for m in milestones], dtype=np.int64)
    epochs = _steps(total_steps) // int(steps_per_epoch)
    decays = np.searchsorted(bounds, epochs, side="right").astype(np.float64)
    return float(base_lr) * float(gamma) ** decays


@register_schedule("exponential", rank=3, help="times --lr-gamma every epoch")
def _exponential(
    base_lr: float, total_steps: int, steps_per_epoch: int, gamma: float
) -> np.ndarray:
    """``base_lr * gamma ** epoch``: the decay is per epoch, not per step."""
    epochs = (_steps(total_steps) // int(steps_per_epoch)).astype(np.float64)
    return float(base_lr) * float(gamma) ** epochs


@register_schedule("cosine", rank=4, floor=True, help="cosine annealing to --min-lr")
def _cosine(base_lr: float, total_steps: int, min_lr: float = 0.0) -> np.ndarray:
    """``min_lr + (base_lr - min_lr) * (1 + cos(pi * i / (total_steps - 1))) / 2``."""
    base_lr, min_lr = float(base_lr), float(min_lr)
    cosine = (1.0 + np.cos(np.pi * _fraction(total_steps))) / 2.0
    return np.clip(min_lr + (base_lr - min_lr) * cosine, min_lr, base_lr)


@register_schedule("polynomial", rank=5, floor=True,
                   help="polynomial decay to --min-lr, power --lr-power")
def _polynomial(
    base_lr: float, total_steps: int, min_lr: float = 0.0, power: float = 1.0
) -> np.ndarray:
    """``min_lr + (base_lr - min_lr) * (1 - i / (total_steps - 1)) ** power``."""
    base_lr, min_lr = float(base_lr), float(min_lr)
    remaining = np.clip(1.0 - _fraction(total_steps), 0.0, 1.0)
    return np.clip(min_lr + (base_lr - min_lr) * remaining ** float(power), min_lr, base_lr)


def _cosine_anneal(start: float, end: float, fraction: np.ndarray) -> np.ndarray:
    return end + (start - end) * (1.0 + np.cos(np.pi * fraction)) / 2.0


@register_schedule("onecycle", rank=6, warmup=False,
                   help="one cycle: up to --lr and down again, its own warm-up")
def _one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> np.ndarray:
    """From ``max_lr / div_factor`` up a half cosine to ``max_lr``, then down one to that
    divided by ``final_div_factor`` (like torch OneCycleLR). The peak is step
    ``round(pct_start * total_steps) - 1``, clamped into the run: torch's when that product
    is whole, and rounding makes sure ``max_lr`` is reached."""
    max_lr = float(max_lr)
    initial_lr = max_lr / float(div_factor)
    final_lr = initial_lr / float(final_div_factor)
    peak = min(max(math.floor(float(pct_start) * total_steps + 0.5) - 1, 0), total_steps - 1)
    last = total_steps - 1
    values = np.empty(total_steps, dtype=np.float64)
    if peak > 0:
        values[: peak + 1] = _cosine_anneal(initial_lr, max_lr, _steps(peak + 1) / float(peak))
    if last > peak:
        fall = _steps(last - peak + 1) / float(last - peak)
        values[peak:] = _cosine_anneal(max_lr, final_lr, fall)
    values[peak] = max_lr
    return values


def _warmup(values: np.ndarray, warmup_steps: int, warmup_start_lr: float) -> np.ndarray:
    """A linear ramp from ``warmup_start_lr`` in front of ``values``, in equal increments that
    arrive at ``values[0]`` on the step after the ramp."""
    if warmup_steps == 0:
        return values
    target = float(values[0])
    start = float(warmup_start_lr)
    ramp = start + (target - start) * (_steps(warmup_steps) / float(warmup_steps))
    return np.concatenate([ramp, values])


def _run_steps(epochs: int, steps_per_epoch: int, warmup_epochs: float) -> tuple[int, int]:
    """The run's steps and its warm-up's, each checked against what a schedule can hold."""
    from trainer.limits import MAX_TOTAL_STEPS

    total_steps = int(epochs) * int(steps_per_epoch)
    if total_steps > MAX_TOTAL_STEPS:
        raise ConfigError(
            f"The run would take {total_steps:,} training steps ({epochs} epochs of "
            f"{steps_per_epoch} steps), more than the limit of {MAX_TOTAL_STEPS:,}: the "
            "learning-rate schedule holds one value per step on the device and in every "
            "checkpoint. Lower --epochs, or raise --batch-size for fewer steps per epoch."
        )
    warmup_steps = math.floor(float(warmup_epochs) * int(steps_per_epoch) + 0.5)
    if warmup_steps >= total_steps:  # only a tiny data set rounds a shorter warm-up up to it
        raise ConfigError(
            f"Learning-rate schedule setting 'warmup_epochs' is {float(warmup_epochs)!r}, but "
            f"the warm-up ({warmup_steps} steps) must be shorter than the run: epochs={epochs} "
            f"of {steps_per_epoch} steps is {total_steps} steps."
        )
    return total_steps, warmup_steps


def build_schedule(
    name: str,
    *,
    base_lr: float,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    warmup_start_lr: float = 0.0,
    min_lr: float = 0.0,
    gamma: float = 0.1,
    step_size: int = 30,
    milestones: Sequence[int] = (30, 60, 90),
    power: float = 1.0,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> np.ndarray:
    """The learning rate for every step of a run, by schedule name, as a float64 array.

    The run has ``epochs * steps_per_epoch`` steps. The first
    ``warmup_steps = round(warmup_epochs * steps_per_epoch)`` of them ramp linearly from
    ``warmup_start_lr`` towards ``base_lr``; the named schedule fills the rest and starts at
    ``base_lr``. A schedule takes only the settings it declares; the values are the ones
    :class:`~trainer.config.TrainConfig` validated (``onecycle`` takes no warm-up).

    Args:
        name: One of :data:`SCHEDULES`.
        base_lr: Learning rate after the warm-up (the peak for ``onecycle``).
        epochs: Epochs in the run.
        steps_per_epoch: Steps in one epoch.
        warmup_epochs: Length of the linear warm-up in epochs (fractions allowed). Defaults
            to ``0.0``.
        warmup_start_lr: Learning rate on the first warm-up step. Defaults to ``0.0``.
        min_lr: Floor reached on the last step by ``cosine`` and ``polynomial``. Defaults to
            ``0.0``.
        gamma: Decay factor for ``step``, ``multistep`` and ``exponential`` (per epoch).
            Defaults to ``0.1``.
        step_size: Epochs between decays for ``step``. Defaults to ``30``.
        milestones: Decay epochs for ``multistep``. Defaults to ``(30, 60, 90)``.
        power: Exponent for ``polynomial``. Defaults to ``1.0``.
        pct_start: Fraction of the run spent rising for ``onecycle``. Defaults to ``0.3``.
        div_factor: ``base_lr`` over the first learning rate for ``onecycle``. Defaults to
            ``25.0``.
        final_div_factor: First over last learning rate for ``onecycle``. Defaults to ``1e4``.

    Returns:
        ``epochs * steps_per_epoch`` learning rates, one per step.

    Raises:
        ConfigError: the run has more steps than ``trainer.limits.MAX_TOTAL_STEPS``, or its
            warm-up rounds to the whole run.

    Example:
        >>> lrs = build_schedule("multistep", base_lr=0.1, epochs=3, steps_per_epoch=2,
        ...                      warmup_epochs=1, milestones=[1])
        >>> [round(float(v), 6) for v in lrs]
        [0.0, 0.05, 0.1, 0.1, 0.01, 0.01]
    """
    from trainer.plugins import declared_arguments

    total_steps, warmup_steps = _run_steps(epochs, steps_per_epoch, warmup_epochs)
    schedule = REGISTRY.get(name)
    settings = {"steps_per_epoch": steps_per_epoch, "step_size": step_size,
                "milestones": milestones, "gamma": gamma, "min_lr": min_lr, "power": power,
                "pct_start": pct_start, "div_factor": div_factor,
                "final_div_factor": final_div_factor}
    values = schedule(base_lr, total_steps - warmup_steps,
                      **declared_arguments(schedule, settings))
    return _warmup(values, warmup_steps, warmup_start_lr)


#: Names accepted by :func:`build_schedule` (the registry's, as ``--lr-schedule`` offers them).
SCHEDULES: tuple[str, ...] = REGISTRY.names()
