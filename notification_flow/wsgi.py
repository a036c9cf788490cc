"""Serving the app with gunicorn from `python server.py`, so production needs no extra configuration."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from notification_flow.cli import number_in
from notification_flow.logs import gunicorn_logconfig
from notification_flow.metrics import multiprocess_directory

log = logging.getLogger("server")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """server.py's own options: where to listen and how many workers; each checked, so a bad one is exit 2."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; "
                        "put a TLS proxy in front for the internet)")
    parser.add_argument("--port", type=number_in(int, 1, 65535), default=8080, help="port to listen on "
                        "(default: 8080)")
    parser.add_argument("--workers", type=number_in(int, 1), default=os.cpu_count() or 1,
                        help="worker processes (default: one per core)")
    parser.add_argument("--threads", type=number_in(int, 1), default=4, help="threads per worker (default: 4)")


def stop_cleanly_until_serving() -> None:
    """SIGTERM or SIGINT before gunicorn has taken them over: exit 0 through every `finally` (the metrics
    directory is removed), as a stop once serving does, rather than die by the signal or in a traceback."""
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)


def warn_if_exposed(host: str) -> None:
    """Said once at start-up: a server on a non-loopback address is meant to sit behind a TLS proxy."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning("listening on %s: expecting a TLS reverse proxy in front (see deploy/nginx); set "
                    "TRUSTED_PROXIES to the number of proxies", host)


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
        if env_args.control_socket is not None:  # asked for: where it was asked, and only then
            self.cfg.set("control_socket_disable", False)

    def load(self) -> Any:
        return self.app_factory()  # in each worker, after the fork: no connection crosses processes


def serve(app_factory: Callable[[], Any], host: str, port: int, workers: int, threads: int) -> None:
    warn_if_exposed(host)
    with multiprocess_directory():  # the workers' metric files, summed by /metrics
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
        # gunicornc's socket would be one path in $HOME shared by every server on the host (an ERROR where the
        # home is not writable): off, unless GUNICORN_CMD_ARGS names one with --control-socket
        "control_socket_disable": True,
    }
