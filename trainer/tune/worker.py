"""A worker: runs a study's trials one after another until the study holds its trials.

Any number of workers, on this machine (``--workers N``) or on others with the same storage URL,
share one study. Before asking for a trial a worker fails the trials of dead processes (this
machine's at once, others' by Optuna's heartbeat) and counts the study's trials; it asks only
while fewer than ``--trials`` are finished or under way. The count and the ask happen under the
study's ask lock: the lock file in the study's folder for this machine's workers and, on
PostgreSQL, the study's advisory lock for every machine's (:mod:`trainer.tune.server`), so the
study gets exactly ``--trials``; on MySQL, workers on other machines may add one trial each at
the very end. A worker with nothing left to ask waits while trials run elsewhere, since one of
them may die and be queued again.
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
from trainer.tune.study import make_sampler, progress

logger = logging.getLogger("mstrain")

POLL_SECONDS = 2.0
ASK_LOCK = STUDY_LOCK


class AskLock:
    """The study's ask lock, released at most once: the lock file in the study's folder, then,
    when ``storage`` is on a PostgreSQL server, the study's advisory lock there.

    Args:
        folder: The study's folder.
        storage: The study's storage. Defaults to `None` (the lock file only).
        study_name: The study's name (with ``storage``). Defaults to `""`.
    """

    def __init__(self, folder: Path, storage=None, study_name: str = "") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._handle = hold_lock(folder / ASK_LOCK)
        self._server = None
        try:
            if hasattr(storage, "ask_lock"):
                self._server = storage.ask_lock(study_name)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._server is not None:
            self._server()
            self._server = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def run_trials(optuna, recipe: TuneRecipe, study, retry, planned: int,
               deadline: float | None = None, storage=None,
               worker: int = 0) -> tuple[str, str | None]:
    """Runs trials until ``planned`` are finished, the deadline passes, or a signal stops one.

    Args:
        storage: The study's storage, whose ask lock (on a database server) orders the workers
            of every machine. Defaults to `None`.
        worker: This worker's number on this machine (0 for a single process), which seeds a
            seeded sampler with the study's trial count. Defaults to `0`.

    Returns:
        Why it ended, ``"done"``, ``"timeout"`` or ``"interrupted"``, and the signal that
        interrupted a trial (or None).

    Raises:
        UserError: a trial could not run for a reason outside its values (missing data, a full
            disk), and was queued again; or the study's database server could not be reached
            (:class:`~trainer.tune.server.StorageLost`).
        KeyboardInterrupt: a signal between two trials.
    """
    with study_trials(recipe.study_dir):  # the trials claim their runs inside the folder
        try:
            return _run_trials(optuna, recipe, study, retry, planned, deadline, storage, worker)
        except Exception as exc:
            lost = getattr(storage, "lost", None)
            if lost is not None and exc is not lost:
                # Optuna failed again while recording the trial's end on the lost server (an
                # UnboundLocalError of its own, say): the lost server is the news.
                raise lost from None
            raise


def _run_trials(optuna, recipe: TuneRecipe, study, retry, planned: int,
                deadline: float | None, storage, worker: int) -> tuple[str, str | None]:
    objective = Objective(optuna, recipe, retry)
    said_waiting = False
    while True:
        lock = AskLock(recipe.study_dir, storage, recipe.study_name)
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
                if recipe.settings.sampler_seed >= 0:
                    # Seeded by the trials the study holds now, which the ask lock makes new at
                    # every ask: machines that are all worker 0 would draw the same values.
                    study.sampler = make_sampler(optuna, recipe, worker,
                                                 len(study.get_trials(deepcopy=False)))
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
