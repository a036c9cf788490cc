"""The in-process handle: a real threaded HTTP server on a free port, plus the test-control methods."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from emulator import control
from emulator.app import create_app
from emulator.options import EmulatorOptions
from emulator.service import Service


class _QuietHandler(WSGIRequestHandler):
    """Request logging only when asked for: test output stays readable."""

    log_requests = False

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.log_requests:
            super().log_request(code, size)


class _Server(ThreadedWSGIServer):
    """Request threads are joined on close (werkzeug's default daemon threads would be abandoned)."""

    daemon_threads = False
    block_on_close = True


class Emulator:
    """One emulator instance; use as a context manager or call start() and stop().

    All methods are safe to call from any thread. Job lookups raise KeyError for unknown ids.
    """

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self._service: Service | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._server is not None:
            raise RuntimeError("emulator already started")
        self._service = Service(self.options)
        handler = type("Handler", (_QuietHandler,), {"log_requests": self.options.log_requests})
        try:
            self._server = _Server(self.options.host, self.options.port, create_app(self._service), handler)
        except BaseException:
            self._service.close()
            raise
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="emulator-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, join request and background threads, close the socket, delete uploads."""
        server, service, thread = self._server, self._service, self._thread
        if server is None or service is None or thread is None:
            return
        service.jobs.close()  # release ?wait= requests first so their threads can be joined
        server.shutdown()
        thread.join()
        server.server_close()
        service.close()
        self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None):
        self.stop()

    @property
    def service(self) -> Service:
        if self._service is None:
            raise RuntimeError("emulator not started")
        return self._service

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        """``http://host:port`` without the API prefix (the control API lives at /_emulator)."""
        return f"http://{self.options.host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL clients are given: ``http://127.0.0.1:PORT/v2``."""
        return f"{self.base_url}/v2"

    @property
    def seed(self) -> int:
        """The seed in use (chosen at random when the options set none); replay a run with it."""
        return self.service.seed

    # --- test control (same implementation as the /_emulator routes) --------------------------------

    def stats(self) -> dict[str, Any]:
        return control.stats(self.service)

    def deliveries(self) -> list[dict[str, Any]]:
        return self.service.notifier.deliveries()

    def faults(self) -> dict[str, Any]:
        return control.faults(self.service)

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        return control.set_faults(self.service, changes)

    def held(self) -> list[dict[str, Any]]:
        return self.service.notifier.held()

    def deliver(self, key: str) -> dict[str, Any]:
        """Send held attempt ``key`` now and remove it: ``{"outcome": status code or "error: ..."}``."""
        return control.deliver(self.service, key)

    def duplicate(self, key: str) -> dict[str, Any]:
        """Send held attempt ``key`` now but keep it held (a second copy can follow)."""
        return control.duplicate(self.service, key)

    def drop(self, key: str) -> dict[str, Any]:
        return control.drop(self.service, key)

    def finish(self, job_id: str, outcome: str | None = None) -> dict[str, Any]:
        return control.finish(self.service, job_id, outcome)

    def expire(self, job_id: str) -> dict[str, Any]:
        return control.expire(self.service, job_id)

    def job(self, job_id: str) -> dict[str, Any]:
        return control.job(self.service, job_id)

    def transcript_bytes(self, job_id: str) -> bytes:
        return control.transcript_bytes(self.service, job_id)
