"""A worker: runs a study's trials one after another until the study holds its trials.

Any number of workers, on this machine (``--workers N``) or on others with the same storage URL,
share one study. Before asking for a trial a worker fails the trials of dead processes (this
machine's at once, others' by Optuna's heartbeat) and counts the study's trials; it asks only
while fewer than ``--trials`` are finished or under way. On one machine the count and the ask
happen under a lock in the study's folder, so the study gets exactly ``--trials``; workers on
other machines may add one trial each at the very end. A worker with nothing left to ask waits
while trials run elsewhere, since one of them may die and be queued again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from trainer.engine.rundir import STUDY_LOCK, study_trials
from trainer.fileio import hold_lock
from trainer.tune.liveness import fail_dead_trials
from trainer.tune.objective import HANDLED, Objective
from trainer.tune.recipe import TuneRecipe
from trainer.tune.study import progress

logger = logging.getLogger("mstrain")

POLL_SECONDS = 2.0
ASK_LOCK = STUDY_LOCK


class AskLock:
    """An exclusive lock on the study folder's ask lock, released at most once."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._handle = hold_lock(folder / ASK_LOCK)

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def run_trials(optuna, recipe: TuneRecipe, study, retry, planned: int,
               deadline: float | None = None) -> tuple[str, str | None]:
    """Runs trials until ``planned`` are finished, the deadline passes, or a signal stops one.

    Returns:
        Why it ended, ``"done"``, ``"timeout"`` or ``"interrupted"``, and the signal that
        interrupted a trial (or None).

    Raises:
        UserError: a trial could not run for a reason outside its values (missing data, a full
            disk); it was queued again.
        KeyboardInterrupt: a signal between two trials.
    """
    with study_trials(recipe.study_dir):  # the trials claim their runs inside the folder
        return _run_trials(optuna, recipe, study, retry, planned, deadline)


def _run_trials(optuna, recipe: TuneRecipe, study, retry, planned: int,
                deadline: float | None) -> tuple[str, str | None]:
    objective = Objective(optuna, recipe, retry)
    said_waiting = False
    while True:
        lock = AskLock(recipe.study_dir)
        ran = False
        try:
            fail_dead_trials(study, retry)
            optuna.storages.fail_stale_trials(study)
            now = progress(study)
            if now.finished >= planned:
                return "done", None
            if deadline is not None and time.time() >= deadline:
                return "timeout", None
            # Asking takes a queued trial first, so only running ones may fill the study.
            if now.finished + now.running < planned:
                objective.release = lock.release
                study.optimize(objective, n_trials=1, catch=HANDLED, callbacks=[objective.after])
                ran, said_waiting = True, False
        finally:
            lock.release()
        if objective.stop_reason:
            return "interrupted", objective.stop_reason
        if objective.error is not None:
            raise objective.error
        if not ran:
            if not said_waiting:
                logger.info("Waiting for %d trial(s) running in other processes (a trial whose "
                            "process dies is queued again and run here).", now.running)
                said_waiting = True
            time.sleep(POLL_SECONDS)
