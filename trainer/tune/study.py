"""Opening a study: its storage, sampler and pruner, the check that a continued study has the same
recipe, and how many of its trials are done.

The storage is Optuna's RDB storage (SQLite in the study's folder by default; a PostgreSQL or
MySQL URL shares the study across machines, through :mod:`trainer.tune.server`) with Optuna's
heartbeat: a trial whose process dies stops beating, is failed after the grace period, and
``RetryHeartbeatStaleTrialCallback`` queues its parameters again. Trials interrupted by a signal
and trials of dead processes on this machine (:mod:`trainer.tune.liveness`) go through the same
callback at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import ConfigError, OutputError, UserError, os_fault, redact, shown
from trainer.extras import install_hint
from trainer.tune.recipe import TuneRecipe

logger = logging.getLogger("mstrain")

# The most seconds between heartbeats of a running trial; the grace period (--heartbeat-grace)
# is the time since the last one before another process fails it. A trial
# process is a Python thread away from beating even while a graph compiles; the grace period
# covers a slow shared database. Dead trials on this machine do not wait for it.
HEARTBEAT_SECONDS = 20
# A trial whose process dies (or is interrupted) is queued again at most this many times.
MAX_RETRIES = 3
STUDY_ATTR = "mstrain"
# The grace period the study was started with, which every process of the study must use.
HEARTBEAT_ATTR = "mstrain_heartbeat_grace"
# Seconds to wait for a database server's answer when connecting.
CONNECT_TIMEOUT_SECONDS = 10


def heartbeat_timing(grace: int) -> tuple[int, float]:
    """The heartbeat interval that goes with a grace period of ``grace`` seconds (a quarter of
    it, at most :data:`HEARTBEAT_SECONDS`), and how long a process waits for a database server
    that cannot be reached: the grace period less two heartbeats, so that its running trial is
    beating again before any other process may take it for dead."""
    interval = max(1, min(HEARTBEAT_SECONDS, grace // 4))
    return interval, float(grace - 2 * interval)


def default_storage(study_dir: Path) -> str:
    """The SQLite database in the study's folder, as an absolute URL (a '?', '#' or '%' in the
    path is escaped, so the URL names this file and no other)."""
    from sqlalchemy.engine import URL

    database = str((study_dir / "study.db").resolve())
    return URL.create("sqlite", database=database).render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite://`` URL, or None (another database, or in memory)."""
    if not url.startswith("sqlite"):
        return None
    try:
        from sqlalchemy.engine import make_url

        database = make_url(url).database
    except Exception:  # a URL SQLAlchemy cannot parse is refused by open_storage
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def check_sqlite(url: str) -> None:
    """Refuses a SQLite database inside a run directory, or one that cannot be written (a
    read-only file or folder: SQLite writes a journal beside the file), before anything is
    written.

    Raises:
        ConfigError: the database would be inside a run directory.
        OutputError: the file or its folder cannot be written.
    """
    import os

    from trainer.engine.rundir import holder_above

    path = sqlite_file(url)
    if path is None:
        return
    above = holder_above(path)
    if above is not None and above.kind == "run":
        raise ConfigError(f"The study's database {path} would be inside {above.describe()}, "
                          "mixing it into that run. Give a --storage outside it.")
    folder = path.parent
    for target, what in ((path, "file"), (folder, "folder")):
        if target.exists() and not os.access(target, os.W_OK):
            raise OutputError(f"The study's database {path} cannot be written: the {what} "
                              f"{target} is read-only, and a study records every trial there. "
                              "Make it writable (or copy the study's folder somewhere writable "
                              "and give that --output-dir or --storage); nothing was changed.")


def mark_study(folder: Path) -> bool:
    """Creates the study's folder and its lock file, which mark it as a study's (see
    :mod:`trainer.engine.rundir`); returns whether the folder was created.

    Raises:
        OutputError: the folder cannot be created.
    """
    from trainer.engine.rundir import STUDY_LOCK

    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        open(folder / STUDY_LOCK, "a").close()
    except OSError as exc:
        raise OutputError(f"Cannot create the study's folder {folder}: {os_fault(exc)}. Choose "
                          "an --output-dir you may write to (with free space).") from None
    return created


def unmark_study(folder: Path) -> None:
    """Removes a study's folder that :func:`mark_study` created, when nothing else is in it."""
    from trainer.engine.rundir import STUDY_LOCK

    try:
        (folder / STUDY_LOCK).unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        pass  # something else is in it: it stays


def shown_url(url: str) -> str:
    """A storage URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL SQLAlchemy cannot parse is refused with its own message
        return url.split("@")[-1] if "@" in url else url


class Retry:
    """Queues a failed trial's parameters again, through Optuna's
    ``RetryHeartbeatStaleTrialCallback`` (intermediate values kept, so the pruner sees the epochs
    a resumed trial has done). The process that ran the trial is not copied to the retry: until
    the retry's own process records itself, nobody may take it for a dead one."""

    def __init__(self, optuna) -> None:
        self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=MAX_RETRIES, inherit_intermediate_values=True)

    def __call__(self, study, trial) -> None:
        import copy

        trial = copy.deepcopy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != "worker"}
        self._retry(study, trial)


def retry_callback(optuna) -> Retry:
    """The callback that queues failed trials again (see :class:`Retry`)."""
    return Retry(optuna)


def open_storage(optuna, url: str, retry, grace: int = 90) -> Any:
    """Optuna's RDB storage for ``url``, with heartbeats and ``retry`` for stale trials; for a
    database server, one that waits out its short outages
    (:class:`~trainer.tune.server.PatientStorage`).

    Args:
        optuna: The optuna module.
        url: The storage URL.
        retry: The callback that queues a stale trial again.
        grace: The heartbeat's grace period in seconds. Defaults to `90`.

    Raises:
        ConfigError: the URL cannot be parsed, its database driver is missing, or the database
            cannot be reached or created.
    """
    interval, patience = heartbeat_timing(grace)

    def stale(study, trial) -> None:
        logger.info("Trial %d had no heartbeat for over %d s (its process or machine is gone): "
                    "failed, and queued again.", trial.number, grace)
        retry(study, trial)

    heartbeat = {"heartbeat_interval": interval, "heartbeat_stale_trial_callback": stale}
    try:
        if url.startswith("sqlite"):
            _sqlite_folder(url)
            # Several processes share one SQLite file: wait for the lock rather than fail.
            return optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": 60}}, grace_period=grace,
                **heartbeat)
        from trainer.tune.server import PatientStorage

        server = _server_url(url)
        return PatientStorage(server, shown=shown_url(url), patience=patience, grace=grace,
                              engine_kwargs=_server_engine(server), **heartbeat)
    except ImportError as exc:
        missing = getattr(exc.__cause__, "name", None) or exc.name or exc
        raise ConfigError(f"--storage {shown_url(url)} needs the database driver "
                          f"{missing}, which is not installed. The tune extra "
                          f"({install_hint('psycopg')}) brings psycopg for postgresql:// URLs; for "
                          "MySQL install PyMySQL and give a mysql+pymysql:// URL; or use a "
                          "sqlite:/// URL.") from None
    except Exception as exc:  # SQLAlchemy and the drivers raise many kinds
        cause = getattr(exc, "orig", None) or exc  # the driver's own words, without the SQL
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise ConfigError(f"Cannot open the study's storage {shown_url(url)}: {redact(first)}. "
                          "Check the URL (sqlite:///path/study.db, "
                          "postgresql://user:password@host:port/db), that the database server "
                          "is reachable and the user may create tables in the database, and "
                          "that the folder of a SQLite file may be written.") from None


def _server_url(url: str) -> str:
    """``url`` with PostgreSQL's driver named: a plain ``postgresql://`` URL goes to psycopg (3),
    the driver of the tune extra, whatever SQLAlchemy's default (psycopg2 before 2.1)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.drivername != "postgresql":
        return url
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _server_engine(url: str) -> dict[str, Any]:
    """SQLAlchemy's engine options for a database server: a pooled connection is checked before
    use (one the server dropped in a restart is replaced, not failed), and a connection attempt
    to a server that does not answer gives up after a while."""
    from sqlalchemy.engine import make_url

    options: dict[str, Any] = {"pool_pre_ping": True}
    parsed = make_url(url)
    if (parsed.get_backend_name() == "postgresql"
            and parsed.get_driver_name() in ("psycopg2", "psycopg")
            and "connect_timeout" not in parsed.query):
        options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    return options


def _sqlite_folder(url: str) -> None:
    path = sqlite_file(url)
    if path is not None:
        folder = path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"Cannot create {folder} for the study's database: "
                              f"{exc.strerror or exc}. Choose an --output-dir (or --storage) you "
                              "may write to.") from None


def make_sampler(optuna, recipe: TuneRecipe, worker: int = 0, trials: int = 0):
    """The sampler of ``--sampler``. A seeded one is seeded per worker and by how many trials the
    study holds, so parallel workers, and a continued study, do not draw the same values again;
    the workers make a new one before each ask (see :mod:`trainer.tune.worker`).
    """
    settings = recipe.settings
    seed = (None if settings.sampler_seed < 0
            else (settings.sampler_seed + 1000 * worker + trials) % 2**32)
    if settings.sampler == "grid":
        return optuna.samplers.GridSampler(recipe.space.grid(), seed=seed)
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # The constant liar makes a worker avoid the points that other workers are running now.
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(optuna, recipe: TuneRecipe):
    """The pruner of ``--pruner``; epochs are its steps (1 for the first)."""
    settings = recipe.settings
    if settings.pruner == "none":
        return optuna.pruners.NopPruner()
    warmup = min(settings.pruner_warmup_epochs, recipe.epochs)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=warmup, max_resource=recipe.epochs,
                                              reduction_factor=3)
    return optuna.pruners.MedianPruner(n_startup_trials=settings.pruner_startup_trials,
                                       n_warmup_steps=warmup)


def planned_trials(recipe: TuneRecipe) -> int:
    """``--trials``, or the size of the grid when that is smaller."""
    if recipe.settings.sampler == "grid":
        return min(recipe.settings.trials, recipe.space.grid_size())
    return recipe.settings.trials


def open_study(optuna, recipe: TuneRecipe, storage, url: str, worker: int = 0):
    """Creates the study, or loads it to continue, refusing one started with another recipe or
    another heartbeat grace period.

    Raises:
        ConfigError: the study exists with other fixed options, epochs, metric, space or
            ``heartbeat_grace``.
    """
    direction = "maximize" if recipe.base.monitor_mode == "max" else "minimize"
    wanted, grace = recipe.fingerprint(), recipe.settings.heartbeat_grace
    try:
        study = optuna.create_study(study_name=recipe.study_name, storage=storage,
                                    pruner=make_pruner(optuna, recipe), direction=direction,
                                    load_if_exists=True)
        attrs = study.user_attrs
        recorded, recorded_grace = attrs.get(STUDY_ATTR), attrs.get(HEARTBEAT_ATTR)
        if recorded is None:
            study.set_user_attr(STUDY_ATTR, wanted)
        if recorded_grace is None:
            study.set_user_attr(HEARTBEAT_ATTR, grace)
    except UserError:  # the database server went away while the study was opened
        raise
    except Exception as exc:  # Optuna, SQLAlchemy and the drivers raise many kinds
        cause = exc.__cause__ or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise OutputError(f"Cannot write the study {recipe.study_name!r} into its storage "
                          f"{shown_url(url)}: {first}. Check that the database (and the folder "
                          "of a SQLite file) may be written, then run the same command again."
                          ) from None
    study.sampler = make_sampler(optuna, recipe, worker, len(study.get_trials(deepcopy=False)))
    if recorded is not None and recorded != wanted:
        raise ConfigError(f"Study {recipe.study_name!r} in {shown_url(url)} was started "
                          f"with another recipe ({_difference(recorded, wanted)}), so its trials "
                          "would not compare with new ones. Give another --study-name to start "
                          "a new study, or continue this one with the recipe and flags it was "
                          "started with.")
    if recorded_grace is not None and recorded_grace != grace:
        raise ConfigError(f"Study {recipe.study_name!r} in {shown_url(url)} was started with a "
                          f"heartbeat grace period of {shown(recorded_grace)} s, and this command "
                          f"has {grace} s. Every process of a study must use the same, or one "
                          "would fail another's running trials as dead (or wait too long for "
                          f"them): give --heartbeat-grace {shown(recorded_grace)}.")
    if study.direction.name.lower() != direction:
        raise ConfigError(f"Study {recipe.study_name!r} was started to "
                          f"{study.direction.name.lower()} its metric, but the recipe asks to "
                          f"{direction} {recipe.base.monitor}. Give another --study-name.")
    return study


def _difference(recorded: dict[str, Any], wanted: dict[str, Any]) -> str:
    out = []
    old, new = recorded.get("options", {}), wanted["options"]
    for key in dict.fromkeys([*old, *new]):
        if old.get(key) != new.get(key):
            out.append(f"{key} was {shown(old.get(key))}, now {shown(new.get(key))}")
    if recorded.get("space") != wanted["space"]:
        out.append(f"the search space was {shown(recorded.get('space'))}, now "
                   f"{shown(wanted['space'])}")
    return "; ".join(out[:4]) or "its record differs"


@dataclass
class Progress:
    """How far a study is, counting each retried trial once (by its last attempt)."""

    finished: int  # complete, pruned, or failed for good
    running: int
    waiting: int  # queued: enqueued points and retries
    complete: int
    pruned: int
    failed: int

    @property
    def pending(self) -> int:
        return self.running + self.waiting


def progress(study) -> Progress:
    """Counts the study's trials; a trial that was queued again is replaced by its retry."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    replaced = {t.system_attrs["retry_history"][-1] for t in trials
                if t.system_attrs.get("retry_history")}
    states = [t.state for t in trials if t.number not in replaced]
    count = states.count
    return Progress(finished=sum(count(s) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                    TrialState.FAIL)),
                    running=count(TrialState.RUNNING), waiting=count(TrialState.WAITING),
                    complete=count(TrialState.COMPLETE), pruned=count(TrialState.PRUNED),
                    failed=count(TrialState.FAIL))


def enqueue_first(study, recipe: TuneRecipe) -> None:
    """Queues the recipe's ``tune.enqueue`` points, once per study (a continued study skips
    those it has already)."""
    for point in recipe.enqueue:
        study.enqueue_trial(point, skip_if_exists=True)
