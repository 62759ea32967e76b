"""Tests for trainer.engine.schedules: values, warm-up, lengths, the checks that depend on the
run's size, and speed. The schedule options' validation is tested in
tests/config/test_schedule_options.py."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest

from trainer.engine.schedules import SCHEDULES, build_schedule
from trainer.errors import ConfigError

DECAYING_TO_FLOOR = ("cosine", "polynomial")
WARMUP_SCHEDULES = tuple(name for name in SCHEDULES if name != "onecycle")

# Settings under which every schedule visibly changes within a short run.
SHORT_RUN: dict[str, Any] = {"gamma": 0.5, "step_size": 1, "milestones": (1, 2)}


def approx(values: list[float]) -> Any:
    return pytest.approx(values, abs=1e-9, rel=1e-7)


def lrs(name: str, **settings: Any) -> list[float]:
    """The schedule through its one entry point, as a list to compare with hand-written ones."""
    return build_schedule(name, **settings).tolist()


# ------------------------------------------------------------------------------------------
# Hand-written values.
# ------------------------------------------------------------------------------------------


def test_schedules_tuple() -> None:
    assert SCHEDULES == (
        "constant", "step", "multistep", "exponential", "cosine", "polynomial", "onecycle"
    )


@pytest.mark.parametrize(
    ("name", "settings", "expected"),
    [
        ("constant", {}, [0.1, 0.1, 0.1, 0.1, 0.1, 0.1]),
        ("step", {"step_size": 1}, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01]),
        ("step", {"step_size": 2}, [0.1, 0.1, 0.1, 0.1, 0.1, 0.1]),
        ("multistep", {"milestones": [1]}, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01]),
        ("multistep", {"milestones": [2, 5]}, [0.1, 0.1, 0.1, 0.1, 0.1, 0.1]),
        ("exponential", {"gamma": 0.5}, [0.1, 0.1, 0.1, 0.05, 0.05, 0.05]),
        (
            "cosine",
            {},
            [0.1, 0.0904508497, 0.0654508497, 0.0345491503, 0.0095491503, 0.0],
        ),
        (
            "cosine",
            {"min_lr": 0.01},
            [0.1, 0.0914057647, 0.0689057647, 0.0410942353, 0.0185942353, 0.01],
        ),
        ("polynomial", {}, [0.1, 0.08, 0.06, 0.04, 0.02, 0.0]),
        ("polynomial", {"min_lr": 0.02}, [0.1, 0.084, 0.068, 0.052, 0.036, 0.02]),
        (
            "polynomial",
            {"power": 2.0},
            [0.1, 0.064, 0.036, 0.016, 0.004, 0.0],
        ),
    ],
)
def test_two_epochs_of_three_steps(name: str, settings: dict[str, Any],
                                   expected: list[float]) -> None:
    values = lrs(name, base_lr=0.1, epochs=2, steps_per_epoch=3, **settings)
    assert values == approx(expected)


def test_constant_lr() -> None:
    assert lrs("constant", base_lr=0.1, epochs=1, steps_per_epoch=4) == [0.1, 0.1, 0.1, 0.1]


def test_step_lr_every_two_epochs() -> None:
    values = lrs("step", base_lr=0.1, epochs=6, steps_per_epoch=1, step_size=2, gamma=0.5)
    assert values == approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_step_lr_counts_epochs_not_steps() -> None:
    values = lrs("step", base_lr=0.1, epochs=3, steps_per_epoch=2, step_size=1, gamma=0.5)
    assert values == approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_multistep_lr() -> None:
    values = lrs("multistep", base_lr=0.1, epochs=3, steps_per_epoch=2, milestones=(1, 2),
                  gamma=0.5)
    assert values == approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_multistep_lr_milestones_beyond_the_run_do_nothing() -> None:
    values = lrs("multistep", base_lr=0.1, epochs=2, steps_per_epoch=2, milestones=[1, 10, 20],
                  gamma=0.1)
    assert values == approx([0.1, 0.1, 0.01, 0.01])


def test_exponential_lr_is_per_epoch() -> None:
    values = lrs("exponential", base_lr=0.1, epochs=3, steps_per_epoch=2, gamma=0.5)
    assert values == approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_cosine_lr_five_steps() -> None:
    values = lrs("cosine", base_lr=0.1, epochs=5, steps_per_epoch=1)
    assert values == approx([0.1, 0.0853553391, 0.05, 0.0146446609, 0.0])


def test_polynomial_lr_five_steps() -> None:
    values = lrs("polynomial", base_lr=0.1, epochs=5, steps_per_epoch=1, min_lr=0.02, power=2.0)
    assert values == approx([0.1, 0.065, 0.04, 0.025, 0.02])


def test_one_cycle_lr_five_steps() -> None:
    # initial = 1 / 4, final = initial / 10, peak on step round(0.6 * 5) - 1 = 2.
    values = lrs("onecycle", base_lr=1.0, epochs=5, steps_per_epoch=1, pct_start=0.6,
                  div_factor=4.0, final_div_factor=10.0)
    assert values == approx([0.25, 0.625, 1.0, 0.5125, 0.025])


def test_one_cycle_lr_defaults() -> None:
    values = lrs("onecycle", base_lr=1.0, epochs=10, steps_per_epoch=1)
    assert values[0] == pytest.approx(0.04)
    assert values[2] == 1.0
    assert values[-1] == pytest.approx(0.04 / 1e4)


def _torch_one_cycle(max_lr: float, total: int, pct_start: float, div_factor: float,
                     final_div_factor: float) -> list[float]:
    """Scalar transcription of torch OneCycleLR with cosine annealing."""
    initial = max_lr / div_factor
    final = initial / final_div_factor
    phases = [
        (float(pct_start * total) - 1, initial, max_lr),
        (float(total) - 1, max_lr, final),
    ]
    out = []
    for step in range(total):
        start_step = 0.0
        for index, (end_step, start_lr, end_lr) in enumerate(phases):
            if step <= end_step or index == len(phases) - 1:
                pct = (step - start_step) / (end_step - start_step)
                out.append(end_lr + (start_lr - end_lr) / 2.0 * (math.cos(math.pi * pct) + 1))
                break
            start_step = end_step
    return out


@pytest.mark.parametrize(("total", "pct_start"), [(100, 0.3), (40, 0.25), (10, 0.5)])
def test_one_cycle_lr_matches_torch_when_the_peak_is_a_whole_step(total: int,
                                                                  pct_start: float) -> None:
    expected = _torch_one_cycle(0.5, total, pct_start, 25.0, 1e4)
    assert lrs("onecycle", base_lr=0.5, epochs=total, steps_per_epoch=1,
               pct_start=pct_start) == approx(expected)


def test_single_step_schedules() -> None:
    one_step = {"base_lr": 0.1, "epochs": 1, "steps_per_epoch": 1}
    assert lrs("cosine", **one_step, min_lr=0.01) == [0.1]
    assert lrs("polynomial", **one_step) == [0.1]
    assert lrs("onecycle", **one_step) == [0.1]


def test_values_are_one_float64_per_step() -> None:
    for name in SCHEDULES:
        values = build_schedule(name, base_lr=0.1, epochs=2, steps_per_epoch=3, **SHORT_RUN)
        assert isinstance(values, np.ndarray)
        assert values.dtype == np.float64 and values.shape == (6,)


# ------------------------------------------------------------------------------------------
# Warm-up.
# ------------------------------------------------------------------------------------------


def test_warmup_values() -> None:
    # A two-step ramp into a schedule of [0.2, 0.1]; a three-step one from 0.1 into [0.4].
    assert lrs("step", base_lr=0.2, epochs=4, steps_per_epoch=1, warmup_epochs=2, step_size=1,
               gamma=0.5) == approx([0.0, 0.1, 0.2, 0.1])
    assert lrs("constant", base_lr=0.4, epochs=4, steps_per_epoch=1, warmup_epochs=3,
               warmup_start_lr=0.1) == approx([0.1, 0.2, 0.3, 0.4])


def test_zero_warmup_returns_the_schedule() -> None:
    assert lrs("step", base_lr=0.4, epochs=2, steps_per_epoch=1, warmup_epochs=0, step_size=1,
               gamma=0.5) == [0.4, 0.2]


def test_build_schedule_cosine_with_warmup() -> None:
    values = lrs("cosine", base_lr=0.1, epochs=2, steps_per_epoch=3, warmup_epochs=1)
    assert values == approx([0.0, 0.1 / 3, 0.2 / 3, 0.1, 0.05, 0.0])


def test_build_schedule_warmup_start_lr() -> None:
    values = lrs(
        "constant", base_lr=0.1, epochs=2, steps_per_epoch=3, warmup_epochs=1,
        warmup_start_lr=0.01,
    )
    assert values == approx([0.01, 0.04, 0.07, 0.1, 0.1, 0.1])


def test_fractional_warmup_epochs_round_to_steps() -> None:
    values = lrs("constant", base_lr=0.1, epochs=2, steps_per_epoch=4,
                            warmup_epochs=0.5)
    assert values == approx([0.0, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])


def test_warmup_shifts_epoch_based_decay() -> None:
    # Milestones count epochs from the end of the warm-up.
    values = lrs("multistep", base_lr=0.1, epochs=3, steps_per_epoch=2,
                            warmup_epochs=1, milestones=[1])
    assert values == approx([0.0, 0.05, 0.1, 0.1, 0.01, 0.01])


@pytest.mark.parametrize("name", WARMUP_SCHEDULES)
@pytest.mark.parametrize(("warmup_epochs", "start"), [(1, 0.0), (2.5, 0.0), (3, 0.02)])
def test_warmup_rises_to_exactly_base_lr(name: str, warmup_epochs: float, start: float) -> None:
    steps_per_epoch = 4
    values = lrs(
        name, base_lr=0.1, epochs=6, steps_per_epoch=steps_per_epoch,
        warmup_epochs=warmup_epochs, warmup_start_lr=start, **SHORT_RUN,
    )
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    assert values[0] == start
    assert values[warmup_steps] == 0.1
    assert values[warmup_steps - 1] < 0.1
    ramp = np.asarray(values[: warmup_steps + 1])
    assert np.all(np.diff(ramp) > 0)
    # The increments are equal: the ramp is a straight line into base_lr.
    assert np.allclose(np.diff(ramp), (0.1 - start) / warmup_steps)


# ------------------------------------------------------------------------------------------
# Shape properties.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize(("epochs", "steps_per_epoch"), [(1, 1), (1, 7), (2, 3), (13, 5)])
def test_length_is_epochs_times_steps_per_epoch(name: str, epochs: int,
                                                steps_per_epoch: int) -> None:
    values = lrs(name, base_lr=0.1, epochs=epochs, steps_per_epoch=steps_per_epoch,
                            **SHORT_RUN)
    assert len(values) == epochs * steps_per_epoch


@pytest.mark.parametrize("name", WARMUP_SCHEDULES)
@pytest.mark.parametrize("warmup_epochs", [0.0, 0.3, 1.0, 4.0])
def test_length_with_warmup(name: str, warmup_epochs: float) -> None:
    values = lrs(name, base_lr=0.1, epochs=5, steps_per_epoch=3,
                            warmup_epochs=warmup_epochs, **SHORT_RUN)
    assert len(values) == 15


@pytest.mark.parametrize("name", SCHEDULES)
def test_starts_at_base_lr_and_never_exceeds_it(name: str) -> None:
    values = lrs(name, base_lr=0.1, epochs=7, steps_per_epoch=11, **SHORT_RUN)
    assert max(values) == 0.1
    assert min(values) > 0.0 or name in DECAYING_TO_FLOOR
    if name != "onecycle":
        assert values[0] == 0.1


@pytest.mark.parametrize("name", [n for n in SCHEDULES if n != "constant"])
def test_decaying_schedules_never_rise_after_the_peak(name: str) -> None:
    values = np.asarray(
        lrs(name, base_lr=0.1, epochs=7, steps_per_epoch=11, **SHORT_RUN)
    )
    peak = int(np.argmax(values))
    assert np.all(np.diff(values[peak:]) <= 0)


@pytest.mark.parametrize("name", DECAYING_TO_FLOOR)
@pytest.mark.parametrize("warmup_epochs", [0, 2])
@pytest.mark.parametrize("min_lr", [0.0, 1e-5, 0.05])
def test_floor_reached_on_the_last_step_and_never_crossed(name: str, warmup_epochs: int,
                                                          min_lr: float) -> None:
    values = lrs(name, base_lr=0.1, epochs=9, steps_per_epoch=7, min_lr=min_lr,
                            warmup_epochs=warmup_epochs, power=0.7)
    assert values[-1] == min_lr
    assert min(values[warmup_epochs * 7:]) == min_lr
    assert all(value >= min_lr for value in values[warmup_epochs * 7:])


@pytest.mark.parametrize(
    ("total", "pct_start", "peak_step"),
    [(10, 0.3, 2), (100, 0.3, 29), (7, 0.5, 3), (6, 0.25, 1), (5, 0.0, 0), (5, 1.0, 4)],
)
def test_onecycle_peak_is_max_lr_at_the_right_step(total: int, pct_start: float,
                                                   peak_step: int) -> None:
    values = lrs("onecycle", base_lr=0.4, epochs=total, steps_per_epoch=1,
                            pct_start=pct_start)
    assert values[peak_step] == 0.4
    assert max(values) == 0.4
    assert int(np.argmax(values)) == peak_step
    assert np.all(np.diff(values[: peak_step + 1]) > 0)
    assert np.all(np.diff(values[peak_step:]) < 0)


def test_onecycle_end_points() -> None:
    values = lrs("onecycle", base_lr=0.5, epochs=10, steps_per_epoch=10,
                            div_factor=10.0, final_div_factor=100.0)
    assert values[0] == pytest.approx(0.05)
    assert values[-1] == pytest.approx(0.0005)


# ------------------------------------------------------------------------------------------
# Determinism, extension and speed.
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEDULES)
def test_deterministic(name: str) -> None:
    first = lrs(name, base_lr=0.1, epochs=5, steps_per_epoch=13, **SHORT_RUN)
    second = lrs(name, base_lr=0.1, epochs=5, steps_per_epoch=13, **SHORT_RUN)
    assert first == second


@pytest.mark.parametrize("name", ["constant", "step", "multistep", "exponential"])
def test_epoch_based_schedules_extend_as_a_prefix(name: str) -> None:
    short = lrs(name, base_lr=0.1, epochs=4, steps_per_epoch=3, **SHORT_RUN)
    long = lrs(name, base_lr=0.1, epochs=8, steps_per_epoch=3, **SHORT_RUN)
    assert long[: len(short)] == short


def test_extending_a_cosine_changes_its_shape() -> None:
    short = lrs("cosine", base_lr=0.1, epochs=4, steps_per_epoch=3)
    long = lrs("cosine", base_lr=0.1, epochs=8, steps_per_epoch=3)
    assert long[0] == short[0]
    assert long[len(short) - 1] > short[-1]


def test_numpy_scalars_are_accepted() -> None:
    values = lrs("multistep", base_lr=np.float64(0.1), epochs=np.int64(2),
                            steps_per_epoch=np.int32(3), milestones=[np.int64(1)])
    assert values == approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.01])


@pytest.mark.parametrize("name", SCHEDULES)
def test_hundred_thousand_steps_is_fast(name: str) -> None:
    settings = {"warmup_epochs": 0.0 if name == "onecycle" else 2.0, **SHORT_RUN}
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        values = lrs(name, base_lr=0.1, epochs=100, steps_per_epoch=1000, **settings)
        best = min(best, time.perf_counter() - start)
    assert len(values) == 100_000
    assert best < 0.05


# ------------------------------------------------------------------------------------------
# What depends on the run's size (the settings themselves are validated with the options).
# ------------------------------------------------------------------------------------------

BASE: dict[str, Any] = {"base_lr": 0.1, "epochs": 4, "steps_per_epoch": 3}


@pytest.mark.parametrize(
    ("name", "settings", "match"),
    [
        ("cosine", {"warmup_epochs": 4},
         r"'warmup_epochs' is 4\.0.*warm-up \(12 steps\) must be shorter than the run.*12 steps"),
        ("cosine", {"warmup_epochs": 3.9}, r"'warmup_epochs' is 3\.9.*shorter than the run"),
        ("step", {"warmup_epochs": 10}, r"'warmup_epochs' is 10\.0.*shorter than the run"),
        ("constant", {"epochs": 5001, "steps_per_epoch": 1000},
         r"5,001,000 training steps.*limit of 5,000,000"),
    ],
)
def test_build_schedule_rejects(name: Any, settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_schedule(name, **{**BASE, **settings})


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("cosine", {"gamma": 0.0, "step_size": 0, "milestones": [], "pct_start": 5.0}),
        ("step", {"min_lr": 0.5, "power": -1.0, "div_factor": 0.0}),
        ("exponential", {"milestones": "bad", "step_size": -3}),
        ("constant", {"gamma": 7.0, "power": 0.0, "final_div_factor": -1.0}),
    ],
)
def test_settings_a_schedule_does_not_use_are_not_checked(name: str,
                                                          settings: dict[str, Any]) -> None:
    assert len(lrs(name, **{**BASE, **settings})) == 12
