"""Realistic json-v2 notification bodies of any size, each carrying the job id it is sent for.

The words and timings come from a real 53 s Speechmatics transcript (shared/reference/samples), repeated
with shifted timings until the body reaches the wanted size, so the parser sees real key order, real
nesting and real number formats. Without that sample an emulator-rendered transcript stands in. Bodies
are compact JSON, as the API sends them.

A body is a prefix, the job id and a suffix, so the load generator can give every request its own id
without serialising 2 MB again; a 200 MB body is streamed to a file cycle by cycle, never held in memory.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "reference" / "samples" / "transcript-json-v2-real-53s.json"
PLACEHOLDER = "@@job-id@@"
ID_LENGTH = 12  # ids the bench makes are this long (Speechmatics' are 10; the server accepts 8 to 32)


@dataclass(frozen=True)
class BodyTemplate:
    prefix: bytes
    suffix: bytes

    def body(self, job_id: str) -> bytes:
        return self.prefix + job_id.encode() + self.suffix

    @property
    def size(self) -> int:
        return len(self.prefix) + ID_LENGTH + len(self.suffix)


def sample() -> tuple[dict[str, Any], str]:
    """The transcript to scale, and where it came from (for the report)."""
    if SAMPLE.is_file():
        return json.loads(SAMPLE.read_text()), f"real 53 s transcript ({SAMPLE.name})"
    from emulator.transcripts import build_json_v2

    job = {"created_at": "2026-01-01T00:00:00.000Z", "data_name": "call.wav", "duration": 53, "id": "x"}
    config = {"transcription_config": {"language": "en"}}
    return build_json_v2(job, config, 53.0, 1, 1, "2026-01-01T00:00:10.000000Z"), "emulator-rendered transcript"


def _shifted(items: list[dict[str, Any]], offset: float) -> list[dict[str, Any]]:
    """The same results `offset` seconds later: a longer recording with the same speech statistics."""
    return [{**item, "start_time": round(item["start_time"] + offset, 2),
             "end_time": round(item["end_time"] + offset, 2)} for item in items]


def _cycles(document: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """The sample's results once per repetition of the recording, endlessly."""
    duration = float(document["job"]["duration"])
    for cycle in itertools.count():
        yield _shifted(document["results"], cycle * duration)


def _frame(document: dict[str, Any], duration: int) -> tuple[bytes, bytes]:
    """Everything but the results, split around the job id: (up to the id, after it up to `"results":[`)."""
    head = {**document, "job": {**document["job"], "id": PLACEHOLDER, "duration": duration}, "results": []}
    before, after = json.dumps(head, separators=(",", ":")).split(PLACEHOLDER)
    return before.encode(), after.removesuffix("]}").encode()


def template(size: int) -> BodyTemplate:
    """A body of about `size` bytes (whole result items, so within one item of it)."""
    document, _ = sample()
    before, after = _frame(document, 0)
    budget = size - len(before) - ID_LENGTH - len(after) - len("]}") - 8  # 8: room for a longer duration
    parts: list[bytes] = []
    used = 0
    last: dict[str, Any] = {}
    for last in itertools.chain.from_iterable(_cycles(document)):
        item = json.dumps(last, separators=(",", ":")).encode()
        used += len(item) + 1
        if parts and used > budget:
            break
        parts.append(item)
    before, after = _frame(document, math.ceil(last["end_time"]))
    return BodyTemplate(before, after + b",".join(parts) + b"]}")


def write_body(path: Path, job_id: str, size: int) -> int:
    """Stream a body of at least `size` bytes to `path` without holding it in memory; returns its size."""
    document, _ = sample()
    cycle_size = len(json.dumps(document["results"], separators=(",", ":")))
    cycles = max(1, -(-size // cycle_size))
    before, after = _frame(document, cycles * int(document["job"]["duration"]))
    with path.open("wb") as out:
        out.write(before + job_id.encode() + after)
        for number, results in zip(range(cycles), _cycles(document), strict=False):
            out.write(b"," if number else b"")
            out.write(json.dumps(results, separators=(",", ":"))[1:-1].encode())
        out.write(b"]}")
    return path.stat().st_size
