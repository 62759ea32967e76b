"""A study on a database server (PostgreSQL, MySQL): riding out a short outage, and one ask at a
time across machines.

Optuna's RDB storage raises at the first query that fails, so a restart of the database server
would end the study on every machine, with a traceback. :class:`PatientStorage` repeats a call
that failed because the server could not be reached (or dropped the connection) for as long as
the running trial's heartbeat allows: the grace period less two heartbeats, since after that the
other machines may take the trial for dead and run it again. Then it gives up with one paragraph
(:class:`StorageLost`), and every later call of the process fails at once. A heartbeat that
cannot be recorded is skipped, not repeated: the next one follows after the interval.

On PostgreSQL the workers of every machine count the study's trials and ask for one under the
study's advisory lock (:meth:`PatientStorage.ask_lock`), so the study gets exactly ``--trials``.
The lock belongs to a connection of its own, so the server drops it when that connection ends:
a killed process, or a lost machine once the server notices (at most a grace period later).

Imported once optuna is (see :func:`trainer.extras.import_optuna`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from trainer.errors import OutputError, redact

logger = logging.getLogger("mstrain")

T = TypeVar("T")

# The first key of this tool's advisory locks ("mstr"), so they never meet other programs' locks
# on the same server; the second key is the study's id.
LOCK_SPACE = 0x6D737472
LOCK_POLL_SECONDS = 0.1
# Seconds between two tries at a server that cannot be reached.
RETRY_SECONDS = 1.0
CREATE_TRIES = 4


class StorageLost(OutputError):
    """The study's database server could not be reached for longer than the heartbeat of a
    running trial allows: the study cannot go on in this process."""


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says that the server could not be reached or dropped the connection (or
    broke off a transaction, as in a deadlock), rather than refusing what was asked."""
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    if isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated:
        return True
    return isinstance(cause, (sa_exc.OperationalError, sa_exc.InterfaceError,
                              sa_exc.DisconnectionError))


def _first_line(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    cause = getattr(cause, "orig", None) or cause  # the driver's own words, without the SQL
    message = str(cause).strip()
    return redact(message.splitlines()[0] if message else type(cause).__name__)


class PatientStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage for a database server, waiting out the server's short outages.

    Args:
        url: The storage URL.
        shown: The URL as messages show it (no password).
        patience: Seconds to wait for a server that cannot be reached before giving up.
        grace: The heartbeat's grace period, in seconds; also bounds how long the ask lock may
            be held by a connection that went quiet.
        **kwargs: Passed to ``optuna.storages.RDBStorage``.
    """

    def __init__(self, url: str, *, shown: str, patience: float, grace: int,
                 **kwargs: Any) -> None:
        for attempt in range(CREATE_TRIES):
            try:
                super().__init__(url, grace_period=grace, **kwargs)
                break
            except (sa_exc.IntegrityError, sa_exc.ProgrammingError):
                # Machines opening a new database at once race to create Optuna's tables (one
                # gets a duplicate key or table); the next try finds them made.
                if attempt == CREATE_TRIES - 1:
                    raise
                time.sleep(0.5)
        self.shown, self.patience = shown, patience
        self.lost: StorageLost | None = None
        self._guard = threading.Lock()
        self._down_since: float | None = None

    # ------------------------------------------------------------------ outages
    def _outage(self, exc: BaseException) -> float:
        """Notes that the server cannot be reached (once per outage); returns when the outage
        began."""
        with self._guard:
            if self._down_since is None:
                self._down_since = time.monotonic()
                logger.warning("The study's database %s cannot be reached (%s); waiting up to "
                               "%.0f s for it.", self.shown, _first_line(exc), self.patience)
            return self._down_since

    def _back(self) -> None:
        if self._down_since is None:
            return
        with self._guard:
            if self._down_since is not None:
                logger.info("The study's database %s is reachable again, after %.1f s.",
                            self.shown, time.monotonic() - self._down_since)
                self._down_since = None

    def _give_up(self, exc: BaseException) -> StorageLost:
        with self._guard:
            if self.lost is None:
                self.lost = StorageLost(
                    f"The study's database {self.shown} could not be reached for "
                    f"{self.patience:.0f} s ({_first_line(exc)}), so the study cannot go on "
                    "here. A trial this process was running stopped with its run directory and "
                    "checkpoints kept, and shows as running in the database until it is failed "
                    "and queued again: at once by this command on this machine, after the "
                    "heartbeat's grace period by another machine. When the server is back, run "
                    "the same command to continue the study.")
            return self.lost

    def patiently(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)``, repeated while the server cannot be reached, at most until
        :attr:`patience` seconds after the outage began.

        Raises:
            StorageLost: the server stayed out of reach (and for every call after that).
        """
        # A write whose connection broke while it committed may have been applied: repeated, it
        # is refused (a trial already finished) or makes one more queued trial, never a lost one.
        while True:
            if self.lost is not None:
                raise self.lost
            try:
                result = call(*args, **kwargs)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                left = self._outage(exc) + self.patience - time.monotonic()
                if left <= 0:
                    raise self._give_up(exc) from None
                time.sleep(min(RETRY_SECONDS, left))
                continue
            self._back()
            return result

    def record_heartbeat(self, trial_id: int) -> None:
        """Records a running trial's heartbeat (in Optuna's heartbeat thread); a heartbeat that
        cannot be recorded is skipped, since the next follows after the interval."""
        if self.lost is not None:
            return
        try:
            super().record_heartbeat(trial_id)
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._outage(exc)
        else:
            self._back()

    # ------------------------------------------------------------------ the ask lock
    def ask_lock(self, study_name: str) -> Callable[[], None] | None:
        """Takes the study's ask lock on a PostgreSQL server, waiting while another process
        holds it; returns the function that releases it, or None on another database (there
        the lock file in the study's folder orders this machine's workers only).

        Raises:
            StorageLost: the server cannot be reached.
        """
        if self.engine.dialect.name != "postgresql":
            return None
        study_id = self.get_study_id_from_name(study_name)
        keys = {"space": LOCK_SPACE, "study": study_id}

        def take():
            conn = self.engine.connect()
            try:
                # A holder that goes quiet (a machine lost while it asks) loses the lock after a
                # grace period, as its trials would.
                conn.execute(text("SELECT set_config('idle_in_transaction_session_timeout', "
                                  ":ms, false)"), {"ms": str(self.grace_period * 1000)})
                while not conn.execute(text("SELECT pg_try_advisory_lock(:space, :study)"),
                                       keys).scalar():
                    time.sleep(LOCK_POLL_SECONDS)
            except BaseException:
                conn.invalidate()
                conn.close()
                raise
            return conn

        conn = self.patiently(take)

        def release() -> None:
            # Closing the connection itself (not returning it to the pool) drops the lock
            # with it, whether or not the server can still be reached.
            conn.invalidate()
            conn.close()

        return release


def _patient(name: str) -> Callable[..., Any]:
    plain = getattr(optuna.storages.RDBStorage, name)

    def call(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        return self.patiently(plain, self, *args, **kwargs)

    call.__name__, call.__qualname__ = name, f"PatientStorage.{name}"
    call.__doc__ = plain.__doc__
    return call


# Every query of the storage that Optuna calls, waited for in the same way.
for _name in [*(n for n in vars(optuna.storages.BaseStorage) if not n.startswith("_")
                and n in vars(optuna.storages.RDBStorage) and n != "remove_session"),
              "_get_stale_trial_ids"]:
    setattr(PatientStorage, _name, _patient(_name))
