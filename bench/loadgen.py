"""The load generator: notifications as Speechmatics sends them, from its own process, on loopback.

    python -m bench.loadgen --port 8080 --secret S --ids ids.txt --size 20000 --concurrency 16 --out r.json

A closed loop: `--concurrency` connections each send a notification, wait for the answer and send the
next, for `--duration` seconds after `--warmup` answers or until every id in `--ids` is used (each id is a
job the database holds as `running`, and its body's `job.id` matches the query's `id`). Only requests
sent after the warmup are measured. It speaks HTTP/1.1 over asyncio streams with keep-alive, the way a Go
client such as Speechmatics' notifier reuses connections, and costs far less CPU than the servers it
loads, which share the same two cores.

`--body-file` sends one body read from disk in chunks instead (the 200 MB memory benchmark).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.bodies import template
from bench.jobrows import reference_for
from notification_flow.auth import job_token

CHUNK = 1 << 20
Sender = Callable[[asyncio.StreamWriter], Awaitable[None]]  # writes one request's body
TIMEOUT_SECONDS = 120.0


@dataclass
class Tally:
    """What came back: latencies of the measured requests, status counts, and when measuring started."""

    warmup: int
    duration: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    all_statuses: Counter[str] = field(default_factory=Counter)
    measure_from: float = field(default_factory=time.perf_counter)
    measure_until: float = 0.0

    def record(self, status: str, started: float, finished: float) -> None:
        self.all_statuses[status] += 1
        answered = self.all_statuses.total()
        if answered == self.warmup:
            self.measure_from = finished
        if answered > self.warmup and started >= self.measure_from:
            self.latencies_ms.append((finished - started) * 1000)
            self.statuses[status] += 1
            self.measure_until = finished

    def more(self) -> bool:
        """Whether to send another request: always during warmup, then until the duration is up."""
        return self.all_statuses.total() < self.warmup or time.perf_counter() < self.measure_from + self.duration

    def summary(self) -> dict[str, object]:
        seconds = self.measure_until - self.measure_from
        return {"requests": len(self.latencies_ms), "seconds": seconds, "statuses": dict(self.statuses),
                "all_statuses": dict(self.all_statuses),
                "per_second": len(self.latencies_ms) / seconds if seconds > 0 else 0.0,
                "latencies_ms": self.latencies_ms}


class Connection:
    """One keep-alive HTTP/1.1 connection, reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, head: bytes, body: Sender) -> str:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(head)
        await body(self.writer)
        status_line = await self.reader.readuntil(b"\r\n")
        headers = (await self.reader.readuntil(b"\r\n\r\n")).lower()
        length = int(headers.split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length:" in headers else 0
        await self.reader.readexactly(length)
        if b"connection: close" in headers:
            self.close()
        return status_line.split()[1].decode()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def request_head(args: argparse.Namespace, job_id: str, length: int) -> bytes:
    token = job_token(args.secret, reference_for(job_id))  # each job's own, as its auth_headers carry it
    return (f"POST {args.path}?id={job_id}&status=success HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
            f"User-Agent: Speechmatics-API/2.0\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


async def send_bytes(data: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(data)
    await writer.drain()


async def send_file(path: Path, writer: asyncio.StreamWriter) -> None:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            writer.write(chunk)
            await writer.drain()


async def worker(args: argparse.Namespace, ids: Iterator[str], tally: Tally,
                 body_for: Callable[[str], tuple[int, Sender]]) -> None:
    connection = Connection(args.host, args.port)
    for job_id in ids:
        if not tally.more():
            break
        length, send = body_for(job_id)
        started = time.perf_counter()
        try:
            status = await asyncio.wait_for(connection.request(request_head(args, job_id, length), send),
                                            TIMEOUT_SECONDS)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError) as error:
            status = f"error: {type(error).__name__}"
            connection.close()
        tally.record(status, started, time.perf_counter())
    connection.close()


def body_source(args: argparse.Namespace) -> Callable[[str], tuple[int, Sender]]:
    """How each request's body is made: from the template, or streamed from --body-file."""
    if args.body_file:
        size = args.body_file.stat().st_size
        return lambda job_id: (size, lambda writer: send_file(args.body_file, writer))
    body_template = template(args.size)

    def from_template(job_id: str) -> tuple[int, Sender]:
        data = body_template.body(job_id)
        return len(data), lambda writer: send_bytes(data, writer)

    return from_template


async def run(args: argparse.Namespace) -> dict[str, object]:
    ids = [line.strip() for line in args.ids.read_text().splitlines() if line.strip()]
    tally = Tally(warmup=min(args.warmup, max(0, len(ids) - 1)), duration=args.duration)
    shared = iter(ids)
    source = body_source(args)
    await asyncio.gather(*(worker(args, shared, tally, source) for _ in range(args.concurrency)))
    return tally.summary()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Send one notification per id, closed loop, and time them.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/webhook")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--ids", type=Path, required=True, help="file of job ids, one a line")
    parser.add_argument("--size", type=int, default=20_000, help="body size in bytes")
    parser.add_argument("--body-file", type=Path, help="send this file as the body instead (its job.id must match)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=0, help="answers not measured")
    parser.add_argument("--duration", type=float, default=float("inf"),
                        help="seconds to measure after the warmup (default: until the ids run out)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime  # its own cost, to show it is not the bottleneck
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
