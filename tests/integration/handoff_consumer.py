"""A consumer of the hand-off on loopback for the process-level tests and the soak: it misbehaves as told,
attempt by attempt, or at random, records every attempt, and checks every signature it took."""

from __future__ import annotations

import contextlib
import http.server
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.integration.support import free_port

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Consumer:
    """A consumer on loopback that misbehaves as told, attempt by attempt: `plan` says what each of the first
    attempts meets ("fail": 500, "hang-up": the connection closed after the body was read, as if the consumer was
    killed before answering, "slow": an answer later than the sender's timeout); every later one is 204, except
    a `flaky` fraction of them, which meet one of those three at random (seeded)."""

    port: int = field(default_factory=free_port)
    plan: list[str] = field(default_factory=list)
    slow_seconds: float = 3.0
    delay: float = 0.0  # before every answer: a delivery that takes a while, so overlaps would show
    flaky: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    received: list[dict[str, Any]] = field(default_factory=list)  # every attempt, in arrival order
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def start(self) -> None:
        consumer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                started = time.monotonic()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers.items())
                try:  # checked on arrival: a signature is only valid for minutes after its timestamp
                    event = Webhook(SECRET).verify(body, headers)
                except Exception:
                    event = None
                with consumer.lock:
                    what = consumer.plan.pop(0) if consumer.plan else consumer.next_at_random()
                    what = what if event is not None else "bad signature"
                    seen = {"headers": headers, "body": body.decode(), "what": what, "started": started,
                            "event": event}
                    consumer.received.append(seen)
                if what == "hang-up":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                time.sleep(consumer.slow_seconds if what == "slow" else consumer.delay)
                self.send_response({"fail": 500, "bad signature": 401}.get(what, 204))
                self.send_header("Content-Length", "0")
                self.end_headers()
                seen["ended"] = time.monotonic()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def next_at_random(self) -> str:
        if self.rng.random() >= self.flaky:
            return "ok"
        return self.rng.choice(("fail", "hang-up", "slow"))

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> dict[str, dict[str, Any]]:
        """Each event the consumer took (answered 2xx, so its signature was valid), by webhook-id."""
        with self.lock:
            return {seen["headers"]["webhook-id"]: seen["event"] for seen in self.received if seen["what"] == "ok"}

    def taken_more_than_once(self) -> int:
        with self.lock:
            taken = Counter(seen["headers"]["webhook-id"] for seen in self.received if seen["what"] == "ok")
        return sum(1 for count in taken.values() if count > 1)


@contextlib.contextmanager
def consumer_running(**options: Any) -> Iterator[Consumer]:
    consumer = Consumer(**options)
    consumer.start()
    try:
        yield consumer
    finally:
        consumer.stop()


