"""Helpers for the emulator tests: WAV files, a recording webhook receiver, polling with a deadline."""

from __future__ import annotations

import io
import json
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import requests

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
T = TypeVar("T")


def wav_bytes(seconds: float = 2.0, rate: int = 8000, channels: int = 1, tone: int = 1) -> bytes:
    """A valid PCM WAV of the given length; ``tone`` varies the samples so files can differ."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        frame = (tone % 30000).to_bytes(2, "little") * channels
        wav.writeframes(frame * int(seconds * rate))
    return buffer.getvalue()


def wait_for(check: Callable[[], T], timeout: float = 10.0, message: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail with ``message`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(0.02)


def job_config(**extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"type": "transcription", "transcription_config": {"language": "en"}}
    config.update(extra)
    return config


def submit(url: str, audio: bytes | None = None, name: str = "clip.wav", **config: Any) -> requests.Response:
    """POST /v2/jobs the way the SDKs do: multipart ``config`` plus ``data_file``."""
    files = {"data_file": (name, audio if audio is not None else wav_bytes())} if "fetch_data" not in config else {}
    files["config"] = (None, json.dumps(job_config(**config)))  # type: ignore[assignment]
    return requests.post(f"{url}/jobs", headers=AUTH, files=files, timeout=10)


def submit_id(url: str, audio: bytes | None = None, name: str = "clip.wav", **config: Any) -> str:
    response = submit(url, audio, name, **config)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    at: float

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    def json(self) -> Any:
        return json.loads(self.body)

    def parts(self) -> dict[str, tuple[str | None, str, bytes]]:
        """Multipart parts by name: (filename, content type, payload)."""
        raw = f"Content-Type: {self.content_type}\r\n\r\n".encode() + self.body
        message = BytesParser(policy=HTTP).parsebytes(raw)
        assert message.is_multipart(), self.content_type
        parts = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            parts[name] = (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        return parts


@dataclass
class Receiver:
    """A threaded HTTP server on a free port that records every request and answers as scripted.

    ``answers[path]`` is a list of status codes used in turn (the last one repeats); ``hang[path]``
    makes the handler sleep that long before answering (to provoke timeouts); ``bodies[path]`` is
    sent as the answer's body (to serve media for ``fetch_data``).
    """

    answers: dict[str, list[int]] = field(default_factory=dict)
    bodies: dict[str, bytes] = field(default_factory=dict)
    hang: dict[str, float] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._served: dict[str, int] = {}
        self._release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def got(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if path is None or r.path == path]

    def wait(self, count: int, path: str | None = None, timeout: float = 10.0) -> list[Received]:
        return wait_for(lambda: len(self.got(path)) >= count and self.got(path), timeout, f"{count} request(s)")

    def _answer(self, path: str) -> int:
        with self._lock:
            served = self._served.get(path, 0)
            self._served[path] = served + 1
        script = self.answers.get(path, [200])
        return script[min(served, len(script) - 1)]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with receiver._lock:
                    receiver.received.append(
                        Received(self.command, parts.path, parse_qs(parts.query), self.headers, body, time.time())
                    )
                if parts.path in receiver.hang:
                    receiver._release.wait(receiver.hang[parts.path])
                status = receiver._answer(parts.path)
                payload = receiver.bodies.get(parts.path, b"")
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
