"""One trial: an ordinary training run with the values the trial draws, reporting to Optuna.

Each trial trains through :class:`~trainer.engine.trainer.Trainer` in its own run directory,
``--output-dir/STUDY/trial-NNNN`` (checkpoints, history and ``config.yaml`` as any run), with
:class:`callbacks.OptunaPruning` reporting the monitored metric after every epoch. Its value is
the best monitored value of its epochs, the epoch the run's best checkpoint keeps. How a trial
ends decides its state:

* trained all its epochs: COMPLETE, with the value;
* stopped by the pruner, or its loss diverged: PRUNED (the values reported so far count);
* drawn values a run refuses (a rule between options): FAIL, and the study goes on;
* interrupted by a signal: FAIL, queued again, and the study stops; its retry resumes the run
  from the checkpoint saved when it stopped (a retry in another ``--output-dir``, or on another
  machine, cannot see that run: it trains the trial from the start, and says so);
* a user error that is not about its values (missing data, a full disk): FAIL, queued again,
  and the study stops with the error's message.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from trainer.config import TrainConfig
from trainer.errors import ConfigError, UserError
from trainer.tune.liveness import identity
from trainer.tune.recipe import TuneRecipe

logger = logging.getLogger("mstrain")


class TrialRefused(Exception):
    """The drawn values make a configuration a run refuses; the trial fails, the study goes on."""


class TrialInterrupted(Exception):
    """A signal stopped the trial; it is queued again and the study stops."""


class TrialBroken(Exception):
    """The trial could not run for a reason outside its values; it is queued again and the
    study stops with the error."""


HANDLED = (TrialRefused, TrialInterrupted, TrialBroken)


def run_name_for(number: int) -> str:
    return f"trial-{number:04d}"


def _first_sentence(text: str) -> str:
    text = " ".join(str(text).split())
    return text.split(". ")[0].rstrip(".")


class Objective:
    """The function a study optimises: ``objective(trial)`` trains one trial.

    Args:
        optuna: The optuna module.
        recipe: The checked tuning recipe.
        retry: The callback that queues a failed trial's parameters again.

    Attributes:
        stop_reason: Set when a signal interrupted a trial: the study must stop.
        error: Set when a trial could not run (:class:`TrialBroken`): the study must stop and
            report it.
        release: Called when a trial starts, to let other workers ask for theirs.
    """

    def __init__(self, optuna, recipe: TuneRecipe, retry) -> None:
        self.optuna, self.recipe, self.retry = optuna, recipe, retry
        self.stop_reason: str | None = None
        self.error: UserError | None = None
        self.release = lambda: None
        self._queue_again = False

    # ------------------------------------------------------------------ optuna hooks
    def __call__(self, trial) -> float:
        self._queue_again = False
        try:
            return self._run(trial)
        except KeyboardInterrupt:  # a signal while the run was not training (see engine.stop)
            raise self._interrupted(trial, "a signal (SIGINT or SIGTERM)") from None

    def after(self, study, frozen) -> None:
        """Optuna's after-trial callback: queues an interrupted or broken trial again."""
        from optuna.trial import TrialState

        if frozen.state == TrialState.FAIL and self._queue_again:
            self.retry(study, frozen)

    # ------------------------------------------------------------------ the run
    def _run(self, trial) -> float:
        from callbacks.optuna_pruning import OptunaPruning

        origin = self._origin(trial)
        run_name = run_name_for(trial.number if origin is None else origin)
        run_dir = self.recipe.study_dir / run_name
        earlier = trial.user_attrs.get("run_dir")  # a retry's: where the trial it repeats ran
        trial.set_user_attr("worker", identity())
        self.release()  # recorded as this process's: other workers may ask now
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("outcome", "running")
        try:
            params = self.recipe.space.suggest(trial)
            cfg = self.recipe.trial_config(params, run_name)
        except ConfigError as exc:
            trial.set_user_attr("outcome", f"refused: {_first_sentence(exc)}")
            raise TrialRefused(str(exc)) from None
        drawn = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        again = f" (again, as trial {origin} was stopped)" if origin is not None else ""
        logger.info("Trial %d%s: %s; run directory %s", trial.number, again, drawn, run_dir)
        pruning = OptunaPruning(trial, monitor=cfg.monitor,
                                hint="'monitor' among the fixed keys of the tuning recipe")
        trainer = _trial_trainer(cfg)
        # A retried trial continues its own run from the newest checkpoint, when there is one.
        resume = "auto" if origin is not None and (run_dir / "checkpoints" /
                                                   "latest.json").is_file() else None
        if origin is not None and resume is None:
            self._start_over(trial, origin, run_dir, earlier)
        try:
            try:
                trainer.fit(callbacks=[pruning], resume=resume, overwrite=resume is None)
            except UserError as exc:
                from trainer.errors import CheckpointError

                if resume is None or not isinstance(exc, CheckpointError):
                    raise
                logger.warning("Cannot continue %s (%s); training the trial afresh.", run_dir,
                               _first_sentence(exc))
                trainer = _trial_trainer(cfg)
                trainer.fit(callbacks=[pruning], overwrite=True)
        except UserError as exc:
            self._ended_early(trial, trainer, pruning, exc)
        self._record(trial, trainer, pruning)
        if trainer.stop and not pruning.pruned:
            # A signal after the run's last step (during its final test): the trial is complete,
            # and the study stops after it.
            self.stop_reason = trainer.stop.reason
        if pruning.pruned:
            trial.set_user_attr("outcome", f"pruned at epoch {pruning.pruned_epoch} of "
                                           f"{cfg.epochs}")
            pruning.check_pruned()
        if pruning.best_epoch is None or not math.isfinite(pruning.best):
            trial.set_user_attr("outcome", "no epoch with a finite metric")
            raise self.optuna.TrialPruned(f"no epoch ended with a finite {cfg.monitor}")
        trial.set_user_attr("outcome", "complete")
        return pruning.best

    @staticmethod
    def _start_over(trial, origin: int, run_dir, earlier: Any) -> None:
        """Says why a retried trial trains from the start."""
        if isinstance(earlier, str) and earlier != str(run_dir):
            why = (f"it ran in {earlier}, on another machine or in another --output-dir, whose "
                   "checkpoints this process does not read")
        else:
            why = f"{run_dir} holds no checkpoint of it"
        logger.warning("Trial %d repeats trial %d from the start: %s.", trial.number, origin, why)

    def _ended_early(self, trial, trainer, pruning, exc: UserError) -> None:
        """A run that raised: interrupted, diverged, or unable to run. Always raises."""
        from trainer.engine.outcome import TrainingStopped

        if isinstance(exc, TrainingStopped) and (trainer.stop or exc.exit_code == 130):
            raise self._interrupted(trial, trainer.stop.reason or "a signal") from None
        if isinstance(exc, TrainingStopped):  # the loss became NaN or infinite
            self._record(trial, trainer, pruning)
            trial.set_user_attr("outcome", f"diverged: {_first_sentence(exc)}")
            raise self.optuna.TrialPruned(f"the run diverged ({_first_sentence(exc)})") from None
        trial.set_user_attr("outcome", f"stopped: {_first_sentence(exc)}")
        self._queue_again, self.error = True, exc
        raise TrialBroken(_first_sentence(exc)) from None

    def _interrupted(self, trial, reason: str) -> TrialInterrupted:
        trial.set_user_attr("outcome", f"interrupted by {reason}; queued again")
        self._queue_again, self.stop_reason = True, reason
        return TrialInterrupted(f"interrupted by {reason}")

    def _record(self, trial, trainer, pruning) -> None:
        """What the trial's run measured, for the study's table and report."""
        history = trainer.history
        rows = history.rows if history is not None else []
        times = [r["epoch_time"] for r in rows if isinstance(r.get("epoch_time"), (int, float))]
        later = times[1:]  # the first epoch also compiles the graphs
        attrs: dict[str, Any] = {"epochs": len(rows),
                                 "epoch_seconds": sum(later) / len(later) if later else None,
                                 "first_epoch_seconds": times[0] if times else None,
                                 "best_epoch": pruning.best_epoch}
        test = history.test if history is not None else {}
        for name, part in (("test_accuracy", test.get("best") or test.get("final")),
                           ("test_accuracy_final", test.get("final"))):
            if part and part.get("test_accuracy") is not None:
                attrs[name] = float(part["test_accuracy"])
        for key, value in attrs.items():
            trial.set_user_attr(key, value)

    def _origin(self, trial) -> int | None:
        """The number of the trial this one retries (the first of its series), if any."""
        from optuna.trial import TrialState

        for frozen in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number == trial.number:
                return self.optuna.storages.RetryHeartbeatStaleTrialCallback \
                    .retried_trial_number(frozen)
        return None


def _trial_trainer(cfg: TrainConfig):
    """A trial's Trainer: the network's 20-line summary is left out of every trial's output
    (``mstrain summary --net NET`` shows it)."""
    from trainer.engine.trainer import Trainer

    trainer = Trainer(cfg)
    trainer.show_summary = False
    return trainer


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
