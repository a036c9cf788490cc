"""A progress bar on a terminal, one line per file everywhere else (logs, cron mail, tests)."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.live = stream.isatty() and total > 1

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.stream.write("\n")

    def advance(self, message: str, ok: bool = True) -> None:
        self.done += 1
        if not self.live:
            print(message, file=sys.stdout if ok else self.stream, flush=True)
            return
        if not ok:
            self.stream.write(f"\r\033[K{message}\n")
        filled = 30 * self.done // self.total
        self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}")
        self.stream.flush()

    def fail(self, message: str) -> None:
        self.stream.write(("\n" if self.live else "") + f"error: {message}\n")
        self.stream.flush()
