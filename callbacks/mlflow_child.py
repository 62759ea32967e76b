"""The process that talks to MLflow for :class:`callbacks.mlflow_logger.MLflowLogger`.

Run as ``python callbacks/mlflow_child.py`` by the logger, never imported by the project: it
needs only the standard library and mlflow, so it starts without MindSpore, and MLflow's import
and store set-up (seconds of Python) run on another core instead of taking the training
process's interpreter lock. It reads one JSON request a line on stdin and answers each with one
JSON line on stdout: ``{"ok": true, "run_id": ...}`` or ``{"error": "Type: message"}``. It ends
at ``{"op": "end"}`` or when stdin closes (the training process has gone).

Requests: ``config`` (the store and the run to record), ``open`` (create the run, or reopen the
saved one and learn what the server has), ``params``, ``metrics`` (points ``[name, value, time
in ms, step]``), ``artifact`` and ``end``.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_BATCH = 1000  # MLflow takes at most 1000 metrics, 100 params per log_batch
_PARAM_BATCH = 100
_PARAM_LENGTH = 6000


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: message``, the message's first line shortened to about ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {text}"


class Sender:
    """The MLflow calls of one training run."""

    def __init__(self, config: dict[str, Any]) -> None:
        import mlflow

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.mlflow = mlflow
        self.config = config
        self.client = mlflow.MlflowClient(config.get("uri"))
        self.run_id: str | None = config.get("run_id")
        self.known: dict[str, int] = {}  # the highest step the server has, per metric
        self.opened = False

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "open":
            self.open(request.get("resume_step"), request.get("backlog") or [])
        elif op == "params":
            self.open(None, [])
            self.params(request["params"])
        elif op == "metrics":
            self.open(None, [])
            self.send(request["points"])
        elif op == "artifact":
            self.open(None, [])
            self.client.log_artifact(self.run_id, request["path"],
                                     artifact_path=request.get("folder"))
        elif op == "end" and self.opened and not self.config.get("attach"):
            self.client.set_terminated(self.run_id, status=request["status"])
        return {"ok": True, "run_id": self.run_id}

    def open(self, resume_step: int | None, backlog: list) -> None:
        if self.opened:
            return
        config, client = self.config, self.client
        reopen = config.get("resumed") or config.get("attach")
        if self.run_id is None and reopen:
            self.run_id = self.find_run()
        if self.run_id is not None:
            try:
                run = client.get_run(self.run_id)
            except self.mlflow.exceptions.MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
                    raise
                self.run_id = None
            else:
                self.opened = True
                if not config.get("attach"):
                    client.update_run(self.run_id, status="RUNNING")
                    self.catch_up(run, resume_step, backlog)
                return
        experiment = client.get_experiment_by_name(config["experiment"])
        if experiment is None:
            experiment_id = client.create_experiment(
                config["experiment"], artifact_location=config.get("artifact_location"))
        else:
            experiment_id = experiment.experiment_id
        run = client.create_run(experiment_id, tags=config.get("tags") or {},
                                run_name=config.get("run_name"))
        self.run_id, self.opened = run.info.run_id, True
        if resume_step is not None:
            self.send(backlog)  # an earlier process's points that never reached a server

    def find_run(self) -> str | None:
        """The id of the run tagged with this run's ``mstrain.run_uid``, in any experiment."""
        ids = [e.experiment_id for e in self.client.search_experiments()]
        if not ids:
            return None
        uid = self.config["run_uid"]
        found = self.client.search_runs(
            ids, filter_string=f"tags.`mstrain.run_uid` = '{uid}'", max_results=1)
        return found[0].info.run_id if found else None

    def catch_up(self, run, resume_step: int | None, backlog: list) -> None:
        """After a resume: learns the highest step the server has of each metric, and sends
        the saved points it lacks."""
        for key in run.data.metrics:
            history = self.client.get_metric_history(self.run_id, key)
            self.known[key] = max((m.step for m in history), default=-1)
        limit = resume_step if resume_step is not None else float("inf")
        self.send([p for p in backlog if p[3] <= limit])

    def params(self, params: dict[str, Any]) -> None:
        entities = [self.mlflow.entities.Param(k, str(v)[:_PARAM_LENGTH])
                    for k, v in params.items()]
        for i in range(0, len(entities), _PARAM_BATCH):
            self.client.log_batch(self.run_id, params=entities[i:i + _PARAM_BATCH])

    def send(self, points: list) -> None:
        """Logs the points the server does not have yet (a step above its highest)."""
        metric = self.mlflow.entities.Metric
        fresh = [metric(k, float(v), int(ts), int(step)) for k, v, ts, step in points
                 if step > self.known.get(k, -1)]
        for i in range(0, len(fresh), _BATCH):
            self.client.log_batch(self.run_id, metrics=fresh[i:i + _BATCH])


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    """Answers requests until ``end`` or the end of ``stdin``; after a failure every later
    request gets the same error (the logger stops sending at the first)."""
    sender: Sender | None = None
    failure: str | None = None
    try:
        import mlflow  # noqa: F401  (now, while the training process prepares)
    except Exception as exc:  # a missing or broken install is answered to the first request
        failure = _first_line(exc)
    for line in stdin:
        request = json.loads(line)
        if failure is None:
            try:
                if request["op"] == "config":
                    sender = Sender(request["config"])
                    reply: dict[str, Any] = {"ok": True, "run_id": sender.run_id}
                else:
                    reply = sender.handle(request)
            except Exception as exc:  # the store's faults are answered, never raised
                failure = _first_line(exc)
        if failure is not None:
            reply = {"error": failure}
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()
        if request["op"] == "end":
            return


def main() -> None:
    """Serves on a copy of stdout; the real stdout goes where stderr goes, so that whatever
    mlflow prints (its "View run" links, warnings) never mixes with the answers."""
    import os

    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
