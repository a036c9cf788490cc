"""Realistic json-v2 notification bodies of any size, each carrying the job id it is sent for.

The results come from a real 53 s Speechmatics transcript (shared/reference/samples), repeated until the
body reaches the wanted size, so the parser sees real key order, nesting and number formats; without that
sample an emulator-rendered transcript stands in. Bodies are compact JSON, as the API sends them. A body is
a prefix, the job id and a suffix, so the load generator gives each request its own id without serialising
the body again.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "reference" / "samples" / "transcript-json-v2-real-53s.json"
PLACEHOLDER = "@@job-id@@"


@dataclass(frozen=True)
class BodyTemplate:
    prefix: bytes
    suffix: bytes

    def body(self, job_id: str) -> bytes:
        return self.prefix + job_id.encode() + self.suffix


def sample() -> dict[str, Any]:
    if SAMPLE.is_file():
        return dict(json.loads(SAMPLE.read_text()))
    from emulator.transcripts import build_json_v2

    job = {"created_at": "2026-01-01T00:00:00.000Z", "data_name": "call.wav", "duration": 53, "id": "x"}
    config = {"transcription_config": {"language": "en"}}
    return dict(build_json_v2(job, config, 53.0, 1, 1, "2026-01-01T00:00:10.000000Z"))


def template(size: int) -> BodyTemplate:
    """A body of about `size` bytes (whole result items, so within one item of it), split around its job id."""
    document = sample()
    head = {**{key: value for key, value in document.items() if key != "results"},
            "job": {**document["job"], "id": PLACEHOLDER}}
    before, after = json.dumps(head, separators=(",", ":")).removesuffix("}").split(PLACEHOLDER)
    items = [json.dumps(item, separators=(",", ":")).encode() for item in document["results"]]
    chosen: list[bytes] = []
    used = len(before) + len(after) + len(PLACEHOLDER) + len(',"results":[]}')
    for item in itertools.cycle(items):
        if chosen and used + len(item) + 1 > size:
            break
        chosen.append(item)
        used += len(item) + 1
    return BodyTemplate(before.encode(), after.encode() + b',"results":[' + b",".join(chosen) + b"]}")
