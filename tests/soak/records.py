"""What a run records: kill windows, the client and cronjob processes, the API's truth, and the result
with every checked counter and its report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.soak.options import SoakOptions


@dataclass(frozen=True)
class KillWindow:
    """From just before a SIGKILL until the restarted server answered /healthz: answers here are excused."""

    url: str
    killed_at: float
    healthy_at: float


@dataclass
class ProcessRun:
    """One client.py or cronjob.py process: its exit code, when it ran, and where its output went."""

    name: str
    returncode: int | None
    started: float
    ended: float
    logs: tuple[Path, ...]

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Run:
    """Everything a finished run leaves for the checks: the API's truth and what our processes did."""

    truth: dict[str, dict[str, Any]]
    deliveries: list[dict[str, Any]]
    windows: list[KillWindow]
    clients: list[ProcessRun]
    cronjobs: list[ProcessRun]
    last_finish: float
    submission_seconds: float
    settling: list[ProcessRun] = field(default_factory=list)  # later passes, while downloads had failed
    conflicting: list[str] = field(default_factory=list)  # done jobs also reported failed


@dataclass
class SoakResult:
    """What the run checked (every counter must be zero), what it saw, and how long things took."""

    seed: int
    options: SoakOptions
    database: str
    workdir: Path
    counters: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.counters.values())

    def failures(self) -> dict[str, int]:
        return {name: count for name, count in self.counters.items() if count}

    def report(self) -> str:
        lines = [f"soak results: {self.options.jobs} jobs, {self.database}, {self.options.servers} server(s), "
                 f"transcripts in {self.options.storage}, seed {self.seed}", "checked (each must be 0):"]
        for name, count in self.counters.items():
            examples = self.examples.get(name) or []
            shown = f"   e.g. {', '.join(examples[:5])}" if count and examples else ""
            lines.append(f"  {name:<56} {count:>6}{shown}")
        lines.append("observed:")
        lines += [f"  {name:<56} {value:>6}" for name, value in self.observed.items()]
        lines.append("timings (seconds):")
        lines += [f"  {name:<56} {value:>6.1f}" for name, value in self.timings.items()]
        lines.append(f"{'PASS' if self.ok else 'FAIL'}: seed {self.seed}; replay with: python -m tests.soak "
                     f"--jobs {self.options.jobs} --seed {self.seed} --database {self.database} "
                     f"--servers {self.options.servers} --storage {self.options.storage}"
                     + (" --delete-after-store" if self.options.delete_after_store else ""))
        return "\n".join(lines)
