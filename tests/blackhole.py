"""A TCP proxy that forwards requests to the emulator but never returns the answer.

The job is created at the API, yet the client never learns its id: exactly what a timeout after the upload,
or a client killed between submitting and recording, looks like from the client's side.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit


@contextlib.contextmanager
def blackhole(target_url: str) -> Iterator[str]:
    """Yield a base URL that swallows every answer from `target_url`."""
    target = urlsplit(target_url)
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()
    connections: list[socket.socket] = []

    def pump(source: socket.socket, sink: socket.socket | None) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if sink is not None:
                    sink.sendall(chunk)

    def accept() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((target.hostname, target.port))
            connections.extend((client, upstream))
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, None), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}{target.path}"
    finally:
        stopping.set()
        listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.close()
