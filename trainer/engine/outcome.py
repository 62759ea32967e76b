"""How a run ends, in words: a finished run's summary, or why it stopped and how to go on."""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer.engine import distributed
from trainer.errors import UserError

logger = logging.getLogger("mstrain")

OTHER_WORKER = "a signal to another worker"


class TrainingStopped(UserError):
    """Training ended early for a reason the user must hear about (divergence, interruption)."""


def failing_callback(exc: BaseException, callbacks: Sequence[Any]) -> str | None:
    """Names the callback (class and hook) in whose code ``exc`` was raised, if any."""
    ids = {id(cb) for cb in callbacks}
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        owner = frame.f_locals.get("self")
        if owner is not None and id(owner) in ids:
            found = f"{type(owner).__name__}.{frame.f_code.co_name}"
    return found


def training_failure(exc: Exception, user: Sequence[Any], run_dir: Path) -> BaseException:
    """What to raise when ``Model.fit`` failed with ``exc``: a peer's failure in a data-parallel
    run, or a user's callback that raised, become messages; anything else is a bug and is
    raised as it is."""
    if distributed.is_peer_failure(exc):
        return distributed.peer_failure(exc, f"--resume auto --run-name {run_dir.name}")
    culprit = failing_callback(exc, user)
    if culprit:
        traceback.print_exception(exc)
        return UserError(f"Callback {culprit} raised {type(exc).__name__}: {exc}. Training "
                         "stopped; fix the callback (the traceback above shows where), then "
                         "resume with --resume auto.", exit_code=1)
    return exc


def report(*, stop_reason: str | None, nan_stopped: str | None, checkpoint, history,
           epochs: int, run_dir: Path, validates_on_test: bool = True) -> None:
    """Logs a finished run's summary, or raises why it stopped early.

    Raises:
        TrainingStopped: the loss diverged (exit 1), or a signal stopped the run before its last
            epoch was complete (exit 130; the message says where the state was saved and how to
            resume).
    """
    if nan_stopped:
        raise TrainingStopped(f"Training stopped: {nan_stopped}. No checkpoint was saved from "
                              "that point on. Lower the learning rate (--lr), add a warm-up "
                              "(--warmup-epochs 1), or check the data.", exit_code=1)
    rows = history.rows
    finished = bool(rows) and rows[-1].get("epoch") == epochs
    if stop_reason and finished:
        logger.info("%s arrived after the last training step; the run had done all its work.",
                    stop_reason)
    elif stop_reason and checkpoint is None:
        raise TrainingStopped(f"Training interrupted by {stop_reason}; worker 0 saved the state "
                              "and says how to resume.", exit_code=130)
    elif stop_reason:
        where = checkpoint.last_path or "(no checkpoint: no step had completed)"
        raise TrainingStopped(
            f"Training interrupted by {stop_reason} after global step "
            f"{checkpoint.last_saved_step}; the state was saved to {where}. Resume with the same "
            f"command plus --resume auto --run-name {run_dir.name} (or "
            "Trainer.fit(resume='auto')).", exit_code=130)
    if rows and "val_accuracy" in rows[-1] and checkpoint is not None:
        last = rows[-1]
        what = "Test" if validates_on_test else "Validation"
        logger.info("%s accuracy: %.4f, %s loss: %.4f (epoch %d). Checkpoint: %s", what,
                    last["val_accuracy"], what.lower(), last.get("val_loss", math.nan),
                    last["epoch"], checkpoint.last_path)
