"""Learning-rate schedules as pure functions: one learning rate per training step.

Every schedule is computed up front as a list of ``float`` with one entry per step. The trainer
turns it into a float32 array and hands it to the optimizer, which reads the entry at index
``global_step``; nothing runs on the host per step.

Conventions shared by all schedules:

* Step ``i`` belongs to epoch ``i // steps_per_epoch``. Epoch-based schedules (``step``,
  ``multistep``, ``exponential``) change value only at epoch boundaries; ``cosine``,
  ``polynomial`` and ``onecycle`` change every step.
* Decaying schedules reach their floor on the last step: ``cosine`` and ``polynomial`` end
  exactly at ``min_lr``, ``onecycle`` at ``max_lr / (div_factor * final_div_factor)``.
* Warm-up (:func:`with_warmup`, ``warmup_epochs`` in :func:`build_schedule`) is a linear ramp
  from ``warmup_start_lr`` placed *before* the main schedule. The main schedule is computed over
  the steps that remain after the warm-up, so the ramp arrives at ``base_lr`` on the first step
  after the warm-up and the decay spans the rest of the run. In particular, ``step_size`` and
  ``milestones`` count epochs from the end of the warm-up.

A schedule is a pure, deterministic function of ``(name, parameters, epochs, steps_per_epoch)``.
Building it again with a larger ``epochs`` (training longer after a resume) gives a different
schedule for a decaying shape: a cosine stretched over 20 epochs is not the 10-epoch cosine
followed by more steps. Deciding which schedule a resumed run follows is the trainer's business;
this module only promises that the same arguments always give the same values, and that building
is cheap (vectorised numpy: a few milliseconds for a hundred thousand steps).

Example:
    >>> lrs = build_schedule("cosine", base_lr=0.1, epochs=2, steps_per_epoch=3)
    >>> len(lrs), lrs[0], lrs[-1]
    (6, 0.1, 0.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from numbers import Integral, Real

import numpy as np

from trainer.errors import ConfigError
from trainer.registry import SCHEDULES as REGISTRY
from trainer.registry import register_schedule

# --------------------------------------------------------------------------------------------
# Validation helpers. Every message names the setting, the value received and what is allowed.
# --------------------------------------------------------------------------------------------


def _reject(key: str, value: object, allowed: str) -> ConfigError:
    return ConfigError(
        f"Learning-rate schedule setting '{key}' is {value!r}, but {allowed}."
    )


def _check_int(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise _reject(key, value, f"it must be a whole number of at least {minimum}")
    return int(value)


def _check_real(key: str, value: object, allowed: str) -> float:
    """Return ``value`` as a float if it is a finite real number (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise _reject(key, value, allowed)
    return float(value)


def _check_positive(key: str, value: object) -> float:
    allowed = "it must be a number greater than 0"
    number = _check_real(key, value, allowed)
    if number <= 0.0:
        raise _reject(key, value, allowed)
    return number


def _check_non_negative(key: str, value: object) -> float:
    allowed = "it must be a number of at least 0"
    number = _check_real(key, value, allowed)
    if number < 0.0:
        raise _reject(key, value, allowed)
    return number


def _check_gamma(value: object) -> float:
    allowed = ("it must be a number greater than 0 and at most 1: the factor the learning rate "
               "is multiplied by at each decay")
    gamma = _check_real("gamma", value, allowed)
    if not 0.0 < gamma <= 1.0:
        raise _reject("gamma", value, allowed)
    return gamma


def _check_min_lr(min_lr: object, base_lr: float) -> float:
    allowed = (f"it must be a number of at least 0 and below base_lr={base_lr!r}: the floor "
               "the schedule decays to")
    floor = _check_real("min_lr", min_lr, allowed)
    if not 0.0 <= floor < base_lr:
        raise _reject("min_lr", min_lr, allowed)
    return floor


def _check_milestones(milestones: object) -> list[int]:
    allowed = ("it must be a non-empty list of whole epochs greater than 0 in strictly "
               "increasing order, for example [30, 60, 90]")
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Sequence):
        raise _reject("milestones", milestones, allowed)
    values = list(milestones)
    if not values:
        raise _reject("milestones", milestones, allowed)
    for item in values:
        if isinstance(item, bool) or not isinstance(item, Integral) or item <= 0:
            raise _reject("milestones", milestones, allowed)
    if any(later <= earlier for earlier, later in pairwise(values)):
        raise _reject("milestones", milestones, allowed)
    return [int(item) for item in values]


# --------------------------------------------------------------------------------------------
# Individual schedules.
# --------------------------------------------------------------------------------------------


def _steps(total_steps: int) -> np.ndarray:
    return np.arange(total_steps, dtype=np.int64)


def _fraction(total_steps: int) -> np.ndarray:
    """Position of each step in ``[0, 1]``: 0 on the first step, 1 on the last."""
    if total_steps == 1:
        return np.zeros(1, dtype=np.float64)
    return _steps(total_steps) / float(total_steps - 1)


def constant_lr(base_lr: float, total_steps: int) -> list[float]:
    """The same learning rate on every step.

    Args:
        base_lr: Learning rate, greater than 0.
        total_steps: Number of steps, at least 1.

    Returns:
        ``total_steps`` copies of ``base_lr``.

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> constant_lr(0.1, 3)
        [0.1, 0.1, 0.1]
    """
    return _constant(base_lr, total_steps).tolist()


@register_schedule("constant", rank=0, help="the base rate throughout")
def _constant(base_lr: float, total_steps: int) -> np.ndarray:
    base_lr = _check_positive("base_lr", base_lr)
    total_steps = _check_int("total_steps", total_steps, 1)
    return np.full(total_steps, base_lr, dtype=np.float64)


def step_lr(
    base_lr: float, total_steps: int, steps_per_epoch: int, step_size: int, gamma: float
) -> list[float]:
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs (like torch StepLR).

    The value on step ``i`` is ``base_lr * gamma ** (epoch // step_size)`` with
    ``epoch = i // steps_per_epoch``.

    Args:
        base_lr: Learning rate of the first epochs, greater than 0.
        total_steps: Number of steps, at least 1.
        steps_per_epoch: Steps in one epoch, at least 1.
        step_size: Epochs between decays, at least 1.
        gamma: Decay factor, in ``(0, 1]``.

    Returns:
        One learning rate per step.

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> [round(v, 6) for v in step_lr(0.1, 6, steps_per_epoch=1, step_size=2, gamma=0.5)]
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    """
    return _step(base_lr, total_steps, steps_per_epoch, step_size, gamma).tolist()


@register_schedule("step", rank=1, help="times --lr-gamma every --lr-step-size epochs")
def _step(
    base_lr: float, total_steps: int, steps_per_epoch: int, step_size: int, gamma: float
) -> np.ndarray:
    base_lr = _check_positive("base_lr", base_lr)
    total_steps = _check_int("total_steps", total_steps, 1)
    steps_per_epoch = _check_int("steps_per_epoch", steps_per_epoch, 1)
    step_size = _check_int("step_size", step_size, 1)
    gamma = _check_gamma(gamma)
    epochs = _steps(total_steps) // steps_per_epoch
    return base_lr * gamma ** (epochs // step_size).astype(np.float64)


def multistep_lr(
    base_lr: float,
    total_steps: int,
    steps_per_epoch: int,
    milestones: Sequence[int],
    gamma: float,
) -> list[float]:
    """Multiply the learning rate by ``gamma`` at each milestone epoch (like torch MultiStepLR).

    From the first step of epoch ``m`` on, for each milestone ``m``, the learning rate carries
    one more factor ``gamma``. Milestones beyond the run have no effect.

    Args:
        base_lr: Learning rate before the first milestone, greater than 0.
        total_steps: Number of steps, at least 1.
        steps_per_epoch: Steps in one epoch, at least 1.
        milestones: Epochs at which to decay: whole numbers greater than 0, strictly increasing.
        gamma: Decay factor, in ``(0, 1]``.

    Returns:
        One learning rate per step.

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> lrs = multistep_lr(0.1, 5, steps_per_epoch=1, milestones=[1, 3], gamma=0.1)
        >>> [round(v, 6) for v in lrs]
        [0.1, 0.01, 0.01, 0.001, 0.001]
    """
    return _multistep(base_lr, total_steps, steps_per_epoch, milestones, gamma).tolist()


@register_schedule("multistep", rank=2, help="times --lr-gamma at each of --lr-milestones")
def _multistep(
    base_lr: float,
    total_steps: int,
    steps_per_epoch: int,
    milestones: Sequence[int],
    gamma: float,
) -> np.ndarray:
    base_lr = _check_positive("base_lr", base_lr)
    total_steps = _check_int("total_steps", total_steps, 1)
    steps_per_epoch = _check_int("steps_per_epoch", steps_per_epoch, 1)
    bounds = np.asarray(_check_milestones(milestones), dtype=np.int64)
    gamma = _check_gamma(gamma)
    epochs = _steps(total_steps) // steps_per_epoch
    decays = np.searchsorted(bounds, epochs, side="right").astype(np.float64)
    return base_lr * gamma**decays


def exponential_lr(
    base_lr: float, total_steps: int, steps_per_epoch: int, gamma: float
) -> list[float]:
    """Multiply the learning rate by ``gamma`` once per epoch (like torch ExponentialLR).

    The decay is per epoch, not per step: the value on step ``i`` is
    ``base_lr * gamma ** (i // steps_per_epoch)``.

    Args:
        base_lr: Learning rate of the first epoch, greater than 0.
        total_steps: Number of steps, at least 1.
        steps_per_epoch: Steps in one epoch, at least 1.
        gamma: Per-epoch decay factor, in ``(0, 1]``; values near 1 (such as 0.95) are usual.

    Returns:
        One learning rate per step.

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> [round(v, 6) for v in exponential_lr(0.1, 4, steps_per_epoch=2, gamma=0.5)]
        [0.1, 0.1, 0.05, 0.05]
    """
    return _exponential(base_lr, total_steps, steps_per_epoch, gamma).tolist()


@register_schedule("exponential", rank=3, help="times --lr-gamma every epoch")
def _exponential(
    base_lr: float, total_steps: int, steps_per_epoch: int, gamma: float
) -> np.ndarray:
    base_lr = _check_positive("base_lr", base_lr)
    total_steps = _check_int("total_steps", total_steps, 1)
    steps_per_epoch = _check_int("steps_per_epoch", steps_per_epoch, 1)
    gamma = _check_gamma(gamma)
    epochs = (_steps(total_steps) // steps_per_epoch).astype(np.float64)
    return base_lr * gamma**epochs


def cosine_lr(base_lr: float, total_steps: int, min_lr: float = 0.0) -> list[float]:
    """Cosine annealing from ``base_lr`` on the first step to ``min_lr`` on the last.

    The value on step ``i`` is
    ``min_lr + (base_lr - min_lr) * (1 + cos(pi * i / (total_steps - 1))) / 2``; a one-step
    schedule is ``[base_lr]``.

    Args:
        base_lr: Learning rate on the first step, greater than 0.
        total_steps: Number of steps, at least 1.
        min_lr: Learning rate on the last step, at least 0 and below ``base_lr``.
            Defaults to ``0.0``.

    Returns:
        One learning rate per step, never below ``min_lr``.

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> [round(v, 6) for v in cosine_lr(0.1, 5, min_lr=0.0)]
        [0.1, 0.085355, 0.05, 0.014645, 0.0]
    """
    return _cosine(base_lr, total_steps, min_lr).tolist()


@register_schedule("cosine", rank=4, floor=True, help="cosine annealing to --min-lr")
def _cosine(base_lr: float, total_steps: int, min_lr: float = 0.0) -> np.ndarray:
    base_lr = _check_positive("base_lr", base_lr)
    total_steps = _check_int("total_steps", total_steps, 1)
    min_lr = _check_min_lr(min_lr, base_lr)
    cosine = (1.0 + np.cos(np.pi * _fraction(total_steps))) / 2.0
    return np.clip(min_lr + (base_lr - min_lr) * cosine, min_lr, base_lr)


def polynomial_lr(
    base_lr: float, total_steps: int, min_lr: float = 0.0, power: float = 1.0
) -> list[float]:
    """Polynomial decay from ``base_lr`` on the first step to ``min_lr`` on the last.

    The value on step ``i`` is
    ``min_lr + (base_lr - min_lr) * (1 - i / (total_steps - 1)) ** power``; ``power=1`` is a
    straight line. A one-step schedule is ``[base_lr]``.

    Args:
        base_lr: Learning rate on the first step, greater than 0.
        total_steps: Number of steps, at least 1.
        min_lr: Learning rate on the last step, at least 0 and below ``base_lr``.
            Defaults to ``0.0``.
        power: Exponent of the decay, greater than 0. Defaults to ``1.0``.

    Returns:
        One learning rate per step, never below ``min_lr``.

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> [round(v, 6) for v in polynomial_lr(0.1, 5, min_lr=0.0, power=2.0)]
        [0.1, 0.05625, 0.025, 0.00625, 0.0]
    """
    return _polynomial(base_lr, total_steps, min_lr, power).tolist()


@register_schedule("polynomial", rank=5, floor=True,
                   help="polynomial decay to --min-lr, power --lr-power")
def _polynomial(
    base_lr: float, total_steps: int, min_lr: float = 0.0, power: float = 1.0
) -> np.ndarray:
    base_lr = _check_positive("base_lr", base_lr)
    total_steps = _check_int("total_steps", total_steps, 1)
    min_lr = _check_min_lr(min_lr, base_lr)
    power = _check_positive("power", power)
    remaining = np.clip(1.0 - _fraction(total_steps), 0.0, 1.0)
    return np.clip(min_lr + (base_lr - min_lr) * remaining**power, min_lr, base_lr)


def _cosine_anneal(start: float, end: float, fraction: np.ndarray) -> np.ndarray:
    return end + (start - end) * (1.0 + np.cos(np.pi * fraction)) / 2.0


def one_cycle_lr(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> list[float]:
    """One-cycle policy with cosine annealing up then down (like torch OneCycleLR).

    The learning rate starts at ``initial = max_lr / div_factor``, rises along a half cosine to
    ``max_lr`` at the peak step, then falls along a half cosine to
    ``initial / final_div_factor`` on the last step. The peak step is
    ``round(pct_start * total_steps) - 1`` (clamped into the run), which is where torch puts it
    when ``pct_start * total_steps`` is a whole number; rounding guarantees ``max_lr`` is
    actually reached.

    Args:
        max_lr: Peak learning rate, greater than 0.
        total_steps: Number of steps, at least 1.
        pct_start: Fraction of the steps spent rising, in ``[0, 1]``. Defaults to ``0.3``.
        div_factor: ``max_lr`` divided by the first step's learning rate, at least 1.
            Defaults to ``25.0``.
        final_div_factor: First step's learning rate divided by the last step's, at least 1.
            Defaults to ``1e4``.

    Returns:
        One learning rate per step.

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> lrs = one_cycle_lr(1.0, 5, pct_start=0.4, div_factor=4.0, final_div_factor=5.0)
        >>> [round(v, 4) for v in lrs]
        [0.25, 1.0, 0.7625, 0.2875, 0.05]
    """
    return _one_cycle(max_lr, total_steps, pct_start, div_factor, final_div_factor).tolist()


@register_schedule("onecycle", rank=6, warmup=False,
                   help="one cycle: up to --lr and down again, its own warm-up")
def _one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> np.ndarray:
    max_lr = _check_positive("max_lr", max_lr)
    total_steps = _check_int("total_steps", total_steps, 1)
    pct_allowed = "it must be a number from 0 to 1: the fraction of the steps spent rising"
    pct_start = _check_real("pct_start", pct_start, pct_allowed)
    if not 0.0 <= pct_start <= 1.0:
        raise _reject("pct_start", pct_start, pct_allowed)
    factor_allowed = "it must be a number of at least 1"
    div_factor = _check_real("div_factor", div_factor, factor_allowed)
    if div_factor < 1.0:
        raise _reject("div_factor", div_factor, factor_allowed)
    final_div_factor = _check_real("final_div_factor", final_div_factor, factor_allowed)
    if final_div_factor < 1.0:
        raise _reject("final_div_factor", final_div_factor, factor_allowed)

    initial_lr = max_lr / div_factor
    final_lr = initial_lr / final_div_factor
    peak = min(max(math.floor(pct_start * total_steps + 0.5) - 1, 0), total_steps - 1)
    last = total_steps - 1
    values = np.empty(total_steps, dtype=np.float64)
    if peak > 0:
        values[: peak + 1] = _cosine_anneal(initial_lr, max_lr, _steps(peak + 1) / float(peak))
    if last > peak:
        fall = _steps(last - peak + 1) / float(last - peak)
        values[peak:] = _cosine_anneal(max_lr, final_lr, fall)
    values[peak] = max_lr
    return values


def with_warmup(
    schedule_values: Sequence[float], warmup_steps: int, warmup_start_lr: float = 0.0
) -> list[float]:
    """Put a linear warm-up in front of a schedule.

    The result is ``warmup_steps`` ramp steps followed by ``schedule_values`` unchanged, so it
    is ``warmup_steps`` longer than the schedule. The ramp starts at ``warmup_start_lr`` and
    rises in equal increments so that the next step, the schedule's first, is where the line
    arrives: ramp step ``j`` is
    ``warmup_start_lr + (schedule_values[0] - warmup_start_lr) * j / warmup_steps``.
    To keep a fixed run length, compute the schedule over ``total_steps - warmup_steps`` steps.

    Args:
        schedule_values: The main schedule, at least one value.
        warmup_steps: Number of ramp steps, at least 0; 0 returns the schedule unchanged.
        warmup_start_lr: Learning rate on the first ramp step, from 0 up to the schedule's
            first value. Defaults to ``0.0``.

    Returns:
        The ramp followed by the schedule.

    Raises:
        ConfigError: If an argument is out of range.

    Example:
        >>> with_warmup([0.2, 0.2], warmup_steps=2)
        [0.0, 0.1, 0.2, 0.2]
    """
    return _warmup(schedule_values, warmup_steps, warmup_start_lr).tolist()


def _warmup(
    schedule_values: Sequence[float], warmup_steps: int, warmup_start_lr: float = 0.0
) -> np.ndarray:
    values = np.asarray(schedule_values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise _reject("schedule_values", schedule_values, "it must hold at least one value")
    warmup_steps = _check_int("warmup_steps", warmup_steps, 0)
    target = float(values[0])
    allowed = f"it must be a number from 0 up to the schedule's first value {target!r}"
    start = _check_real("warmup_start_lr", warmup_start_lr, allowed)
    if not 0.0 <= start <= target:
        raise _reject("warmup_start_lr", warmup_start_lr, allowed)
    if warmup_steps == 0:
        return values
    ramp = start + (target - start) * (_steps(warmup_steps) / float(warmup_steps))
    return np.concatenate([ramp, values])


# --------------------------------------------------------------------------------------------
# Entry point.
# --------------------------------------------------------------------------------------------


def schedule_array(name: str, *, epochs: int, steps_per_epoch: int, **settings) -> np.ndarray:
    """:func:`build_schedule` as a float32 array with one more entry than the run has steps.

    After the last step the optimizer (and ``get_lr``) reads index ``global_step`` == total
    steps, so the last rate is repeated once. No Python list is built, so a long run costs four
    bytes a step.

    Raises:
        ConfigError: as :func:`build_schedule`, and when the run has more steps than
            ``trainer.limits.MAX_TOTAL_STEPS``.
    """
    from trainer.limits import MAX_TOTAL_STEPS

    total = epochs * steps_per_epoch
    if total > MAX_TOTAL_STEPS:
        raise ConfigError(
            f"The run would take {total:,} training steps ({epochs} epochs of {steps_per_epoch} "
            f"steps), more than the limit of {MAX_TOTAL_STEPS:,}: the learning-rate schedule "
            "holds one value per step on the device and in every checkpoint. Lower --epochs, or "
            "raise --batch-size for fewer steps per epoch."
        )
    values = schedule_values(name, epochs=epochs, steps_per_epoch=steps_per_epoch, **settings)
    return np.concatenate([values, values[-1:]]).astype(np.float32)


def build_schedule(name: str, **settings) -> list[float]:
    """:func:`schedule_values` as a list of floats (same arguments, same checks).

    Example:
        >>> lrs = build_schedule("multistep", base_lr=0.1, epochs=3, steps_per_epoch=2,
        ...                      warmup_epochs=1, milestones=[1])
        >>> [round(v, 6) for v in lrs]
        [0.0, 0.05, 0.1, 0.1, 0.01, 0.01]
    """
    return schedule_values(name, **settings).tolist()


def schedule_values(
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
    ``warmup_start_lr`` towards ``base_lr`` (see :func:`with_warmup`); the named schedule fills
    the remaining steps and starts at ``base_lr``. Epoch-based settings (``step_size``,
    ``milestones``) count epochs from the end of the warm-up.

    Only the settings a schedule uses are checked (listed with each below). ``onecycle`` uses
    ``base_lr`` as its peak and warms up by itself, so it takes no ``warmup_epochs``.

    Args:
        name: One of :data:`SCHEDULES`.
        base_lr: Learning rate after the warm-up (the peak for ``onecycle``), greater than 0.
        epochs: Epochs in the run, at least 1.
        steps_per_epoch: Steps in one epoch, at least 1.
        warmup_epochs: Length of the linear warm-up in epochs (fractions allowed), at least 0
            and shorter than the run. Defaults to ``0.0``.
        warmup_start_lr: Learning rate on the first warm-up step, from 0 to ``base_lr``.
            Defaults to ``0.0``.
        min_lr: Floor reached on the last step by ``cosine`` and ``polynomial``. Defaults to
            ``0.0``; below ``base_lr``.
        gamma: Decay factor for ``step``, ``multistep`` and ``exponential`` (per epoch), in
            ``(0, 1]``. Defaults to ``0.1``; set it near 1 (such as 0.95) for ``exponential``.
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
        ConfigError: If the name is unknown or a setting the schedule uses is out of range.

    Example:
        >>> lrs = schedule_values("multistep", base_lr=0.1, epochs=3, steps_per_epoch=2,
        ...                       warmup_epochs=1, milestones=[1])
        >>> [round(float(v), 6) for v in lrs]
        [0.0, 0.05, 0.1, 0.1, 0.01, 0.01]
    """
    base_lr, total_steps, warmup_steps, warmup_start_lr, min_lr = _checked_run(
        name, base_lr, epochs, steps_per_epoch, warmup_epochs, warmup_start_lr, min_lr)
    from trainer.plugins import declared_arguments

    main_steps = total_steps - warmup_steps
    schedule = REGISTRY.get(name)
    settings = {"steps_per_epoch": steps_per_epoch, "step_size": step_size,
                "milestones": milestones, "gamma": gamma, "min_lr": min_lr, "power": power,
                "pct_start": pct_start, "div_factor": div_factor,
                "final_div_factor": final_div_factor}
    values = schedule(base_lr, main_steps, **declared_arguments(schedule, settings))
    return _warmup(values, warmup_steps, warmup_start_lr)


def _checked_run(name, base_lr, epochs, steps_per_epoch, warmup_epochs, warmup_start_lr, min_lr):
    """The settings every schedule shares, checked: the base rate, the run's total steps, the
    warm-up's steps and first rate, and the floor."""
    if not isinstance(name, str) or name not in SCHEDULES:
        raise _reject("name", name, "it must be one of: " + ", ".join(SCHEDULES))
    base_lr = _check_positive("base_lr", base_lr)
    epochs = _check_int("epochs", epochs, 1)
    steps_per_epoch = _check_int("steps_per_epoch", steps_per_epoch, 1)
    total_steps = epochs * steps_per_epoch
    warmup_epochs = _check_non_negative("warmup_epochs", warmup_epochs)
    warmup_steps = math.floor(warmup_epochs * steps_per_epoch + 0.5)
    if warmup_steps >= total_steps:
        raise _reject(
            "warmup_epochs",
            warmup_epochs,
            f"the warm-up ({warmup_steps} steps) must be shorter than the run: epochs={epochs} "
            f"of {steps_per_epoch} steps is {total_steps} steps",
        )
    start_allowed = f"it must be a number from 0 up to base_lr={base_lr!r}"
    warmup_start_lr = _check_real("warmup_start_lr", warmup_start_lr, start_allowed)
    if not 0.0 <= warmup_start_lr <= base_lr:
        raise _reject("warmup_start_lr", warmup_start_lr, start_allowed)
    min_lr = _check_non_negative("min_lr", min_lr)
    if not REGISTRY.info(name, "warmup", True) and warmup_steps > 0:
        raise _reject(
            "warmup_epochs",
            warmup_epochs,
            f"it must be 0 for the '{name}' schedule, which warms up by itself: set pct_start "
            "to choose how much of the run is spent rising",
        )

    return base_lr, total_steps, warmup_steps, warmup_start_lr, min_lr


#: Names accepted by :func:`build_schedule` (the registry's, as ``--lr-schedule`` offers them).
SCHEDULES: tuple[str, ...] = REGISTRY.names()
