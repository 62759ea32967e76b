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

Every reply it reads from a tracking server is bounded (``reply_max_bytes`` of the config, from
``trainer/limits.py``): a reply that declares or streams more ends the reporting like any other
failure of the server, before memory is spent on it.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_BATCH = 1000  # MLflow takes at most 1000 metrics, 100 params per log_batch
_PARAM_BATCH = 100
_PARAM_LENGTH = 6000
_REPLY_MAX_BYTES = 16 << 20  # trainer.limits.TRACKING_REPLY_MAX_BYTES, sent with the config


class ReplyTooLarge(Exception):
    """A tracking server's reply is longer than the limit."""


class BoundedBody:
    """An HTTP response body (urllib3's) that raises :class:`ReplyTooLarge` once more than
    ``limit`` bytes have been read from it; everything else is the wrapped body's."""

    def __init__(self, raw: Any, limit: int, url: str) -> None:
        self._raw, self._limit, self._url, self._count = raw, limit, url, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def _counted(self, data: bytes) -> bytes:
        self._count += len(data)
        if self._count > self._limit:
            self._raw.close()  # the rest is never read
            raise ReplyTooLarge(too_large(self._url, self._limit, "streamed"))
        return data

    def stream(self, amt: int = 2 ** 16, decode_content: bool | None = None):
        for chunk in self._raw.stream(amt, decode_content=decode_content):
            yield self._counted(chunk)

    def read(self, amt: int | None = None, *args: Any, **kwargs: Any) -> bytes:
        room = self._limit - self._count + 1  # one byte past the limit tells a longer body
        amt = room if amt is None else min(amt, room)
        return self._counted(self._raw.read(amt, *args, **kwargs))


def too_large(url: str, limit: int, how: str) -> str:
    """Why a reply was refused: ``how`` is "declared" or "streamed"."""
    from urllib.parse import urlsplit

    asked = "/".join(urlsplit(url).path.rstrip("/").split("/")[-2:])  # no host, no credentials
    rest = "its body was not read" if how == "declared" else "the rest was not read"
    return (f"the server {how} a reply to {asked} longer than {limit / 2 ** 20:g} MiB, the "
            f"limit TRACKING_REPLY_MAX_BYTES of trainer/limits.py; {rest}")


def bound_replies(limit: int) -> None:
    """Makes every HTTP reply this process reads (requests, under MLflow's REST client) end at
    ``limit`` bytes: a declared ``Content-Length`` above it is refused before the body is read,
    and a body that goes on past it is cut there."""
    from requests.adapters import HTTPAdapter

    build = HTTPAdapter.build_response
    if getattr(build, "bounded", False):
        return

    def build_response(adapter, request, raw):
        response = build(adapter, request, raw)
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raw.close()
            raise ReplyTooLarge(too_large(request.url, limit, "declared"))
        response.raw = BoundedBody(raw, limit, request.url)
        return response

    build_response.bounded = True
    HTTPAdapter.build_response = build_response


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: message``, the message's first line shortened to about ``limit`` characters."""
    cause: BaseException | None = exc
    while cause is not None:  # MLflow wraps the transport's errors in its own
        if isinstance(cause, ReplyTooLarge):
            return f"{type(cause).__name__}: {cause}"
        cause = cause.__cause__ or cause.__context__
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
        bound_replies(int(config.get("reply_max_bytes") or _REPLY_MAX_BYTES))
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
        the saved points it lacks.

        The run's own reply holds each metric's latest value, which MLflow defines as the one
        at the highest step: one bounded reply, where the metric histories would be pages
        without end."""
        for metric in run.data.to_proto().metrics:
            self.known[metric.key] = max(self.known.get(metric.key, -1), int(metric.step))
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
