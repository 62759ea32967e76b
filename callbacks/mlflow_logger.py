"""An MLflow run for a training run: parameters, metrics with their steps, tags and artifacts,
sent from a background thread, and continued (the same run) when training resumes."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from callbacks.base import state_value
from callbacks.stats import EpochStats
from callbacks.tracking import FAILED, FINISHED, STOPPED, TrackingLogger
from trainer.extras import import_tracking

logger = logging.getLogger("mstrain")

# MLflow's HTTP client retries a failed request 7 times with growing pauses (minutes in all) and
# waits 120 s for an answer; a run reports in the background either way, but a dead server should
# be noticed within seconds. Applied only where the user has not set them.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
DEFAULT_EXPERIMENT = "mstrain"
_ARTIFACT_FOLDERS = {"checkpoint": "checkpoints", "model": "export"}
_BATCH = 1000  # MLflow takes at most 1000 metrics, 100 params per log_batch
_PARAM_BATCH = 100
_PARAM_LENGTH = 6000

Point = tuple  # (key, value, timestamp in ms, step)


def _points(state: Any) -> list[Point]:
    rows = state_value(state, "unsent", "list", []) or []
    out = []
    for row in rows:
        if (not isinstance(row, list) or len(row) != 4 or not isinstance(row[0], str)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in row[1:])):
            raise ValueError(f"'unsent' holds {row!r:.60}, not [name, value, time, step]")
        out.append((row[0], float(row[1]), int(row[2]), int(row[3])))
    return out


class MLflowLogger(TrackingLogger):
    """Records a run in MLflow, without ever making training wait for the tracking server.

    The run (named like the run directory) gets the hyperparameters as parameters, the metrics
    of :mod:`callbacks.tracking` with their global steps, ``tags`` and, at the end, the files
    passed to :meth:`~callbacks.tracking.TrackingLogger.finish`. All calls to MLflow happen on a
    background thread fed by a bounded queue; a server that is down or slow makes it warn once
    and stop sending, and training goes on (the run's own files keep the record).

    Continuity: the run id and the points not yet confirmed by the server are part of the
    callback's state, saved in every checkpoint bundle. A resumed run reopens the same MLflow
    run, sends those points if the server lacks them, and skips points the server already has
    (sent after the bundle, before the stop), so every step is recorded exactly once.

    Args:
        tracking_uri: Where to record: ``http://host:port`` of a tracking server, or a database
            such as ``sqlite:///runs/mlflow.db``. Defaults to `None`: ``MLFLOW_TRACKING_URI``,
            else MLflow's own default.
        experiment: The experiment's name. Defaults to `None`: ``MLFLOW_EXPERIMENT_NAME``, else
            ``"mstrain"``.
        run_name: The MLflow run's name. Defaults to `None` (MLflow picks one).
        tags: Tags of the run. Defaults to `None`.
        log_every: Record step metrics every N steps; 0 only epochs. Defaults to `100`.
        hparams: The parameters to record. Defaults to `None`.
        stats: Shared :class:`~callbacks.stats.EpochStats`. Defaults to `None`.
        artifact_location: Where a new experiment keeps its artifacts (a folder or URI).
            Defaults to `None` (the tracking store's default).
        run_id: Report into this existing run (as ``--eval-only`` and ``--export`` do).
            Defaults to `None`.
        run_uid: The run's own id, kept as the tag ``mstrain.run_uid``: it finds the MLflow run
            before its id is known (a checkpoint saved before the server answered). Defaults to
            `None`: a new one.
        attach: Report into the run ``run_id`` or ``run_uid`` names, without changing its
            status; a new run when none is found. Defaults to `False`.
        end_timeout: Seconds :meth:`finalize` waits for the queue to drain. Defaults to `20`.
        queue_size: Points kept while the server is slow or down. Defaults to `10000`.

    Example:
        >>> ml = MLflowLogger("sqlite:///runs/mlflow.db", run_name="demo", hparams={"lr": 0.01})
        >>> model.fit(3, train, valid, callbacks=[ml])  # doctest: +SKIP
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None,
                 run_name: str | None = None, tags: Mapping[str, str] | None = None,
                 log_every: int = 100, hparams: Mapping[str, Any] | None = None,
                 stats: EpochStats | None = None, artifact_location: str | None = None,
                 run_id: str | None = None, run_uid: str | None = None, attach: bool = False,
                 end_timeout: float = 20.0, queue_size: int = 10_000) -> None:
        super().__init__(log_every, hparams, stats)
        for name, value in HTTP_DEFAULTS.items():  # before the thread starts: setenv is not
            os.environ.setdefault(name, value)      # safe while other threads read the env
        self.tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        self.experiment = (experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
                           or DEFAULT_EXPERIMENT)
        self.run_name, self.tags = run_name, dict(tags or {})
        self.artifact_location = artifact_location
        self.run_id = run_id
        self.run_uid = run_uid or uuid.uuid4().hex
        self.end_timeout, self.queue_size = end_timeout, queue_size
        self.warnings: list[str] = []
        self._attach = attach
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._unsent: dict[int, Point] = {}  # queued but not confirmed by the server
        self._lock = threading.Lock()
        self._seq = 0
        self._backlog: list[Point] = []
        self._down = False
        self._resumed = False  # restored from a bundle: the MLflow run may exist already
        self._thread = threading.Thread(target=self._work, name="mstrain-mlflow", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- interface
    def log_hparams(self, params: Mapping[str, Any], metrics: Sequence[str]) -> None:
        self._put(("open", None))
        if params:
            self._put(("params", dict(params)))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        points = [(name, float(value), now, int(step)) for name, value in metrics.items()]
        with self._lock:
            if len(self._unsent) + len(points) > self.queue_size:
                self._warn(f"more than {self.queue_size} points are waiting for the server; the "
                           "oldest are dropped from MLflow (history.json keeps every epoch)")
                for seq in sorted(self._unsent)[:len(points)]:
                    del self._unsent[seq]
            seqs = []
            for point in points:
                self._seq += 1
                self._unsent[self._seq] = point
                seqs.append(self._seq)
        self._put(("metrics", seqs))

    def log_artifact(self, path: Path, kind: str = "file") -> None:
        self._put(("artifact", str(Path(path).resolve()), _ARTIFACT_FOLDERS.get(kind)))

    def finalize(self, status: str) -> None:
        self._put(("end", status))
        self._thread.join(self.end_timeout)
        if self._thread.is_alive():
            self._warn(f"the tracking server took more than {self.end_timeout:.0f} s to take the "
                       "last points and files; stopped waiting (the run's own files have them)")

    def rewind(self, step: int) -> None:
        self._put(("open", step))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The run's ids, and the points the server has not confirmed yet."""
        with self._lock:
            unsent = [list(p) for p in self._unsent.values()]
        return {"run_id": self.run_id, "run_uid": self.run_uid, "unsent": unsent}

    @staticmethod
    def check_state(state: dict[str, Any]) -> None:
        """Refuses a saved state of the wrong shape (``ValueError``)."""
        for key in ("run_id", "run_uid"):
            value = state_value(state, key, "str")
            if value is not None and not (0 < len(value) <= 64 and value.isalnum()):
                raise ValueError(f"'{key}' is {value!r:.60}, not a run id")
        _points(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the run id and the unconfirmed points (sent when the run resumes)."""
        self.check_state(state)
        self.run_id = state.get("run_id") or self.run_id
        self.run_uid = state.get("run_uid") or self.run_uid
        self._resumed = True
        self._backlog = _points(state)

    # --------------------------------------------------------------- sending
    def _warn(self, why: str) -> None:
        if why not in self.warnings:
            self.warnings.append(why)
            where = self.tracking_uri or "MLflow's default store"
            logger.warning("MLflow (%s): %s. Training goes on; the run directory keeps the "
                           "record.", where, why)

    def _put(self, op: tuple) -> None:
        try:
            self._queue.put_nowait(op)
        except queue.Full:
            self._warn("the queue to the tracking server is full; a record was dropped")

    def _work(self) -> None:
        try:
            mlflow = import_tracking("mlflow", "--report-to mlflow")
            for name in ("mlflow", "alembic"):
                logging.getLogger(name).setLevel(logging.WARNING)
            client = mlflow.MlflowClient(self.tracking_uri)
        except Exception as exc:  # a broken install fails in many ways; training goes on
            self._down = True
            self._warn(f"cannot start the client ({type(exc).__name__}: {exc})")
            client = mlflow = None
        sender = _Sender(self, client, mlflow)
        while True:
            op = self._queue.get()
            if not self._down:
                try:
                    sender.handle(op)
                except Exception as exc:  # the server's faults must never reach training
                    self._down = True
                    self._warn(f"the tracking store failed ({_first_line(exc)}); nothing more "
                               "is sent by this process")
            if op[0] == "end":
                return


class _Sender:
    """The MLflow calls of one :class:`MLflowLogger`, on its thread."""

    def __init__(self, owner: MLflowLogger, client, mlflow) -> None:
        self.owner, self.client, self.mlflow = owner, client, mlflow
        self.known: dict[str, int] = {}  # the highest step the server has, per metric
        self.opened = False

    def handle(self, op: tuple) -> None:
        kind = op[0]
        if kind == "open":
            self.open(op[1])
        elif kind == "params":
            self.ensure_run()
            self.params(op[1])
        elif kind == "metrics":
            self.ensure_run()
            self.metrics(op[1])
        elif kind == "artifact":
            self.ensure_run()
            self.client.log_artifact(self.owner.run_id, op[1], artifact_path=op[2])
        elif kind == "end" and self.opened:
            self.end(op[1])

    def ensure_run(self) -> None:
        if not self.opened:
            self.open(None)

    def open(self, resume_step: int | None) -> None:
        if self.opened:
            return
        owner, client = self.owner, self.client
        if owner.run_id is None and (owner._resumed or owner._attach):
            owner.run_id = self.find_run()
        if owner.run_id is not None:
            try:
                run = client.get_run(owner.run_id)
            except self.mlflow.exceptions.MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
                owner._warn(f"the run {owner.run_id} recorded in the checkpoint is not in this "
                            "store; a new MLflow run is started")
                owner.run_id = None
            else:
                self.opened = True
                if not owner._attach:
                    client.update_run(owner.run_id, status="RUNNING")
                    self.catch_up(run, resume_step)
                return
        experiment = client.get_experiment_by_name(owner.experiment)
        if experiment is None:
            experiment_id = client.create_experiment(owner.experiment,
                                                     artifact_location=owner.artifact_location)
        else:
            experiment_id = experiment.experiment_id
        tags = {**owner.tags, "mstrain.run_uid": owner.run_uid}
        run = client.create_run(experiment_id, tags=tags, run_name=owner.run_name)
        owner.run_id, self.opened = run.info.run_id, True
        if resume_step is not None and owner._backlog:
            self.send(owner._backlog)  # an earlier run's points that never reached a server
        owner._backlog = []

    def find_run(self) -> str | None:
        """The id of the run tagged with the owner's ``run_uid``, in any experiment."""
        ids = [e.experiment_id for e in self.client.search_experiments()]
        if not ids:
            return None
        found = self.client.search_runs(
            ids, filter_string=f"tags.`mstrain.run_uid` = '{self.owner.run_uid}'", max_results=1)
        return found[0].info.run_id if found else None

    def catch_up(self, run, resume_step: int | None) -> None:
        """After a resume: learns the highest step the server has of each metric, and sends
        the saved points it lacks."""
        for key in run.data.metrics:
            history = self.client.get_metric_history(self.owner.run_id, key)
            self.known[key] = max((m.step for m in history), default=-1)
        limit = resume_step if resume_step is not None else float("inf")
        backlog = [p for p in self.owner._backlog if p[3] <= limit]
        self.owner._backlog = []
        self.send(backlog)

    def params(self, params: Mapping[str, Any]) -> None:
        entities = [self.mlflow.entities.Param(k, str(v)[:_PARAM_LENGTH])
                    for k, v in params.items()]
        for i in range(0, len(entities), _PARAM_BATCH):
            self.client.log_batch(self.owner.run_id, params=entities[i:i + _PARAM_BATCH])

    def metrics(self, seqs: Sequence[int]) -> None:
        owner = self.owner
        with owner._lock:
            points = [owner._unsent[s] for s in seqs if s in owner._unsent]
        self.send(points)
        with owner._lock:
            for s in seqs:
                owner._unsent.pop(s, None)

    def send(self, points: Iterable[Point]) -> None:
        Metric = self.mlflow.entities.Metric
        fresh = [Metric(k, v, ts, step) for k, v, ts, step in points
                 if step > self.known.get(k, -1)]
        for i in range(0, len(fresh), _BATCH):
            self.client.log_batch(self.owner.run_id, metrics=fresh[i:i + _BATCH])

    def end(self, status: str) -> None:
        if self.owner._attach:  # a report into an ended run leaves its status as it was
            return
        self.client.set_terminated(self.owner.run_id, status=status)


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: message``, the message's first line shortened to about ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {text}"


__all__ = ["FAILED", "FINISHED", "MLflowLogger", "STOPPED"]
