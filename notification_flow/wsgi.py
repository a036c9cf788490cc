"""Serving the app with gunicorn from `python server.py`, so production needs no extra configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from notification_flow.logs import gunicorn_logconfig
from notification_flow.metrics import worker_exited


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, app_factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self.app_factory = app_factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self.app_factory()  # in each worker, after the fork: no connection crosses processes


def serve(app_factory: Callable[[], Any], host: str, port: int, workers: int, threads: int) -> None:
    _Gunicorn(app_factory, {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 120,  # a worker stuck this long is replaced; a 200 MB body still arrives well within it
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "logconfig_dict": gunicorn_logconfig(),  # gunicorn's own lines in LOG_FORMAT too
        "child_exit": lambda _arbiter, worker: worker_exited(worker.pid),
    }).run()
