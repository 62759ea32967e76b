"""A local HTTP server for the download tests, and no proxy in their way."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        """Keep request lines out of the test output."""


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Ignore broken pipes: the download closes its size probe before reading the body."""


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """Serves ``folder`` on 127.0.0.1 for the block; yields its base URL (ending in /)."""
    httpd = _QuietServer(("127.0.0.1", 0),
                         functools.partial(_QuietHandler, directory=str(folder)))
    # A short poll keeps shutdown() (which waits for the next poll) from costing 0.5 s a test.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment would intercept requests meant for the local server.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)
