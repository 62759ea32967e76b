"""The callbacks a run gets: the built-in ones its configuration asks for, the user's, and the
checkpoint, in the order ``Model.fit`` calls them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.errors import ConfigError, shown

# Steps between the workers' exchanges of their stop flags in a data-parallel run: a small
# all-reduce that is cheap every 10 steps, and a stop within 10 steps of a signal.
STOP_SYNC_STEPS = 10
MONITOR_HINT = "--monitor METRIC (or 'monitor' in the recipe)"


@dataclass
class RunCallbacks:
    """The callbacks of one run, and the ones the trainer reads afterwards."""

    all: list[Any]
    stats: Any  # callbacks.EpochStats
    history: Any  # callbacks.History
    nan_guard: Any  # callbacks.TerminateOnNaN
    checkpoint: Any | None  # callbacks.ModelCheckpoint, on rank 0 only
    trackers: list[Any]  # --report-to's loggers (callbacks.tracking), on rank 0 only


def config_callbacks(cfg: TrainConfig) -> list[Any]:
    """The callbacks a recipe or ``--callback`` names, each checked to be a ``Callback``
    subclass before it is constructed (see :mod:`trainer.plugins`).

    Raises:
        ConfigError: a name that is not a Callback subclass, or a constructor that fails.
    """
    from trainer.plugins import callback_class

    made = []
    for i, spec in enumerate(cfg.callbacks):
        cls = callback_class(spec["class"], option=f"callbacks[{i}].class")
        try:
            made.append(cls(**spec["args"]))
        except Exception as exc:  # a user's constructor may fail in any way
            raise ConfigError(f"Callback {spec['class']!r} could not be created with "
                              f"arguments {shown(spec['args'])}: {type(exc).__name__}: "
                              f"{exc}") from None
    return made


def check_first(cfg: TrainConfig, callbacks: Sequence[Any]) -> list[Any]:
    """What a run can refuse before any data work: a network factory that cannot be found, a
    callback that is not one, a tracker whose extra is missing. Returns the user's callbacks:
    the configuration's, then the call's."""
    from trainer.networks import is_builtin, resolve_factory

    if not is_builtin(cfg.net):
        resolve_factory(cfg.net)
    user = [*config_callbacks(cfg), *callbacks]
    if user:
        check_callbacks(user)
    if cfg.trackers():
        from trainer.extras import check_tracking

        check_tracking(cfg.trackers())
    return user


def ema_callbacks(cfg: TrainConfig, step) -> list[Any]:
    """The callback that validates with the moving average of the weights, when there is one."""
    if not cfg.ema_decay:
        return []
    from callbacks import EMAValidation

    return [EMAValidation(step)]


def check_callbacks(callbacks: Sequence[Any]) -> None:
    """Refuses objects that are not ``mindspore.train.Callback`` instances."""
    from mindspore.train import Callback

    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise ConfigError(f"Callback {shown(cb)} ({type(cb).__name__}) is not a "
                              "mindspore.train.Callback; subclass it and override the "
                              "on_train_* / on_eval_* methods you need.")


def build_callbacks(cfg: TrainConfig, run_dir: Path, *, stop, user: Sequence[Any],
                    record: Callable[[], Any], states: Callable[[], dict[str, Any]], main: bool,
                    workers: int, sync: Callable[[bool], bool] | None = None) -> RunCallbacks:
    """Assembles a run's callbacks: the stop request first, then the built-in ones, the trackers
    of ``--report-to``, the user's, and the checkpoint last (so every other callback's epoch-end
    hook has run when it saves). The checkpoint asks ``states`` for the callbacks' states each
    time it writes a bundle: the engine's, which holds every callback of the run.

    In a data-parallel run only rank 0 (``main``) prints and writes; the others keep the history
    in memory and run the callbacks that decide something (every worker must decide alike).
    """
    from callbacks import (
        CSVLogger,
        EarlyStopping,
        EpochStats,
        History,
        LearningRateMonitor,
        LossMonitor,
        ModelCheckpoint,
        ProgressBar,
        ReduceLROnPlateau,
        StopOnRequest,
        TerminateOnNaN,
    )

    stats = EpochStats()
    # The engine waits for the last plot after the final test (Trainer._fit_test_finish); the
    # plots are drawn by a process of their own, which leaves this one's interpreter lock to
    # the training loop and the final test.
    history = History(run_dir if main else None, plot=cfg.plot and main, stats=stats,
                      last_plot_in_background=True, plot_process=True)
    nan_guard = TerminateOnNaN(cfg.log_every, stats=stats)
    cbs: list[Any] = [StopOnRequest(stop, sync_every=STOP_SYNC_STEPS if workers > 1 else 0,
                                    sync=sync, stats=stats), nan_guard]
    if main:
        cbs.append(LossMonitor(cfg.log_every, stats=stats))
    if cfg.progress and main:
        cbs.append(ProgressBar(stats=stats))
    cbs += [history, LearningRateMonitor(stats=stats)]
    if cfg.csv_log and main:
        cbs.append(CSVLogger(run_dir / "log.csv", stats=stats))
    monitor = dict(monitor=cfg.monitor, mode=cfg.monitor_mode, min_delta=cfg.min_delta,
                   stats=stats, hint=MONITOR_HINT)
    if cfg.plateau_patience:
        cbs.append(ReduceLROnPlateau(factor=cfg.plateau_factor, patience=cfg.plateau_patience,
                                     **monitor))
    if cfg.early_stopping_patience:
        cbs.append(EarlyStopping(patience=cfg.early_stopping_patience,
                                 restore_best_weights=cfg.restore_best_weights, **monitor))
    trackers = []
    if main and cfg.trackers():
        from trainer.tracking import build_trackers

        trackers = build_trackers(cfg, run_dir, stats, history)
    cbs += trackers + list(user)
    checkpoint = None
    if main:  # the weights are the same on every worker
        checkpoint = ModelCheckpoint(
            run_dir / "checkpoints", every_n_epochs=cfg.save_every_epochs,
            every_n_steps=cfg.save_every_steps, keep_last=cfg.keep_last, save_best=cfg.save_best,
            states=states, meta=record, **monitor)
        cbs.append(checkpoint)
    return RunCallbacks(cbs, stats, history, nan_guard, checkpoint, trackers)
