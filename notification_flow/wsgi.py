"""Serving the app with gunicorn from `python server.py`, so production needs no extra configuration."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from notification_flow.cli import number_in
from notification_flow.logs import gunicorn_logconfig
from notification_flow.metrics import worker_exited


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """server.py's own options: where to listen and how many workers; each checked, so a bad one is exit 2."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; "
                        "put a TLS proxy in front for the internet)")
    parser.add_argument("--port", type=number_in(int, 1, 65535), default=8080, help="port to listen on "
                        "(default: 8080)")
    parser.add_argument("--workers", type=number_in(int, 1), default=os.cpu_count() or 1,
                        help="worker processes (default: one per core)")
    parser.add_argument("--threads", type=number_in(int, 1), default=4, help="threads per worker (default: 4)")


class AccessLogWhenAsked(Logger):  # type: ignore[misc]
    """gunicorn's logger, minus an access line's fields built for every request and thrown away.

    gunicorn builds them whenever a logging configuration is given, as ours always is (its lines in
    LOG_FORMAT), even with no access log: a twentieth of a notification's CPU. server.py logs its own line."""

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if self.cfg.accesslog:
            super().access(resp, req, environ, request_time)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, app_factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self.app_factory = app_factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        """Our defaults, then GUNICORN_CMD_ARGS (gunicorn's documented way to pass options, which
        BaseApplication does not read by itself), merged the way gunicorn's own Application does."""
        for key, value in self.options.items():
            self.cfg.set(key, value)
        env_args = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
        for key, value in vars(env_args).items():
            if value is not None and key != "args":
                self.cfg.set(key.lower(), value)
        if self.cfg.accesslog:  # asked for in GUNICORN_CMD_ARGS: let gunicorn's access lines through
            self.cfg.set("logconfig_dict", gunicorn_logconfig(access=True))

    def load(self) -> Any:
        return self.app_factory()  # in each worker, after the fork: no connection crosses processes


def serve(app_factory: Callable[[], Any], host: str, port: int, workers: int, threads: int) -> None:
    _Gunicorn(app_factory, gunicorn_options(host, port, workers, threads)).run()


def gunicorn_options(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    return {
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
        "logger_class": "notification_flow.wsgi.AccessLogWhenAsked",
        "child_exit": lambda _arbiter, worker: worker_exited(worker.pid),
    }
