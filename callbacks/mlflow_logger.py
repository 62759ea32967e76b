"""An MLflow run for a training run: parameters, metrics with their steps, tags and artifacts,
sent by a process of its own, and continued (the same run) when training resumes."""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from callbacks.base import state_value
from callbacks.stats import EpochStats
from callbacks.tracking import TrackingLogger
from trainer.errors import redact
from trainer.limits import TRACKING_ANSWER_MAX_BYTES, TRACKING_REPLY_MAX_BYTES, describe

logger = logging.getLogger("mstrain")

# MLflow's HTTP client retries a failed request 7 times with growing pauses (minutes in all) and
# waits 120 s for an answer; a run reports in the background either way, but a dead server should
# be noticed within seconds. Given to the MLflow process where the user has not set them.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
DEFAULT_EXPERIMENT = "mstrain"
_ARTIFACT_FOLDERS = {"checkpoint": "checkpoints", "model": "export"}
CHILD = Path(__file__).with_name("mlflow_child.py")

Point = tuple  # (key, value, timestamp in ms, step)


def _run_id(value: Any) -> bool:
    """Whether ``value`` looks like an MLflow run id (what a checkpoint bundle accepts back)."""
    return isinstance(value, str) and 0 < len(value) <= 64 and value.isalnum()


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
    passed to :meth:`~callbacks.tracking.TrackingLogger.finish`. MLflow runs in a process of its
    own (``callbacks/mlflow_child.py``: importing it and opening a store take seconds of Python,
    which would otherwise hold the training process's interpreter lock), fed from a background
    thread through a bounded queue; a server that is down, slow or answers more than
    ``TRACKING_REPLY_MAX_BYTES`` (``trainer/limits.py``) makes it warn once and stop sending, and
    training goes on (the run's own files keep the record). Messages and tags show a URI with
    its credentials hidden (:func:`~trainer.errors.redact`).

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
        history: The run's :class:`~callbacks.history.History`, for a tracker that joins a
            resumed run (see :class:`~callbacks.tracking.TrackingLogger`). Defaults to `None`.
        managed: The owner ends the record (see :class:`~callbacks.tracking.TrackingLogger`).
            Defaults to `False`.
        step: The global step the record stands at before training reports one. Defaults to
            `0`.

    Example:
        >>> ml = MLflowLogger("sqlite:///runs/mlflow.db", run_name="demo", hparams={"lr": 0.01})
        >>> model.fit(3, train, valid, callbacks=[ml])  # doctest: +SKIP
    """

    label = "MLflow"

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None,
                 run_name: str | None = None, tags: Mapping[str, str] | None = None,
                 log_every: int = 100, hparams: Mapping[str, Any] | None = None,
                 stats: EpochStats | None = None, artifact_location: str | None = None,
                 run_id: str | None = None, run_uid: str | None = None, attach: bool = False,
                 end_timeout: float = 20.0, queue_size: int = 10_000,
                 history: Any = None, managed: bool = False, step: int = 0) -> None:
        super().__init__(log_every, hparams, stats, history, managed, step)
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
        self._child: subprocess.Popen | None = None
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
            child = self._child
            if child is not None:
                child.kill()  # its answer never comes: the thread ends with it

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
            if value is not None and not _run_id(value):
                raise ValueError(f"'{key}' is {value!r:.60}, not a run id")
        _points(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the run id and the unconfirmed points (sent when the run resumes)."""
        self.check_state(state)
        super().load_state_dict(state)
        self.run_id = state.get("run_id") or self.run_id
        self.run_uid = state.get("run_uid") or self.run_uid
        self._resumed = True
        self._backlog = _points(state)

    # --------------------------------------------------------------- sending
    def _warn(self, why: str) -> None:
        why = redact(why)  # the store's own messages repeat the URI they were given
        if why not in self.warnings:
            self.warnings.append(why)
            where = redact(self.tracking_uri) if self.tracking_uri else "MLflow's default store"
            logger.warning("MLflow (%s): %s. Training goes on; the run directory keeps the "
                           "record.", where, why)

    def _put(self, op: tuple) -> None:
        try:
            self._queue.put_nowait(op)
        except queue.Full:
            self._warn("the queue to the tracking server is full; a record was dropped")

    def _start_child(self) -> subprocess.Popen:
        """The MLflow process (``callbacks/mlflow_child.py``), in a session of its own so that a
        Ctrl-C meant for training does not end it first; it imports mlflow at once."""
        env = {**HTTP_DEFAULTS, **os.environ}  # the user's settings win
        if env.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION") == "python":
            del env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"]  # MindSpore's need, not mlflow's
        return subprocess.Popen([sys.executable, str(CHILD)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env=env, start_new_session=True)

    def _child_config(self) -> dict[str, Any]:
        tags = {key: redact(str(value)) for key, value in self.tags.items()}
        return {"uri": self.tracking_uri, "experiment": self.experiment,
                "run_name": self.run_name, "tags": {**tags, "mstrain.run_uid": self.run_uid},
                "artifact_location": self.artifact_location, "run_id": self.run_id,
                "run_uid": self.run_uid, "resumed": self._resumed, "attach": self._attach,
                "reply_max_bytes": TRACKING_REPLY_MAX_BYTES}

    def _request(self, op: tuple) -> tuple[dict[str, Any], list[int]]:
        """The JSON request for a queued operation, and the point numbers it carries."""
        kind = op[0]
        if kind == "open":
            backlog, self._backlog = [list(p) for p in self._backlog], []
            return {"op": "open", "resume_step": op[1], "backlog": backlog}, []
        if kind == "params":
            return {"op": "params", "params": op[1]}, []
        if kind == "metrics":
            with self._lock:
                points = [list(self._unsent[s]) for s in op[1] if s in self._unsent]
            return {"op": "metrics", "points": points}, list(op[1])
        if kind == "artifact":
            return {"op": "artifact", "path": op[1], "folder": op[2]}, []
        return {"op": "end", "status": op[1]}, []

    def _work(self) -> None:
        try:
            child = self._child = self._start_child()
        except OSError as exc:
            self._down = True
            self._warn(f"cannot start the MLflow process ({exc})")
            child = None
        configured = False
        try:
            while True:
                op = self._queue.get()
                if not self._down:
                    try:
                        if not configured:
                            _ask(child, {"op": "config", "config": self._child_config()})
                            configured = True
                        request, seqs = self._request(op)
                        reply = _ask(child, request)
                        run_id = reply.get("run_id")
                        if run_id is not None and not _run_id(run_id):
                            # It goes into every bundle, which would then be refused on resume.
                            raise RuntimeError(f"the store named the run {run_id!r:.80}, which "
                                               "is not a run id")
                        self.run_id = run_id or self.run_id
                        with self._lock:
                            for seq in seqs:
                                self._unsent.pop(seq, None)
                    except Exception as exc:  # the store's faults never reach training
                        self._down = True
                        self._warn(f"the tracking store failed ({exc}); nothing more is sent "
                                   "by this process")
                if op[0] == "end":
                    return
        finally:
            if child is not None:
                _close(child)


def _ask(child: subprocess.Popen, request: dict[str, Any]) -> dict[str, Any]:
    """Sends one request to the MLflow process and returns its answer.

    Raises:
        RuntimeError: the process answered an error, or has ended.
    """
    try:
        child.stdin.write(json.dumps(request) + "\n")
        child.stdin.flush()
        line = child.stdout.readline(TRACKING_ANSWER_MAX_BYTES + 1)
    except (OSError, ValueError) as exc:  # a closed pipe: the process has ended
        line, cause = "", exc
    else:
        cause = None
    if not line:
        why = f"; {cause}" if cause else ""
        raise RuntimeError(f"the MLflow process ended (status {child.poll()}{why})")
    if not line.endswith("\n") and len(line) > TRACKING_ANSWER_MAX_BYTES:
        raise RuntimeError(f"the MLflow process answered more than "
                           f"{describe(TRACKING_ANSWER_MAX_BYTES)} in one line")
    try:
        reply = json.loads(line)
    except ValueError:
        raise RuntimeError(f"the MLflow process answered {line.strip()[:100]!r}") from None
    if not isinstance(reply, dict):
        raise RuntimeError(f"the MLflow process answered {line.strip()[:100]!r}")
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply


def _close(child: subprocess.Popen) -> None:
    """Lets the MLflow process end (its stdin closes), killing it if it does not."""
    try:
        child.stdin.close()
    except OSError:
        pass
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


__all__ = ["MLflowLogger"]
