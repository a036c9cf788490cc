"""The directory fsync shared by concurrent publishers: every new entry is durable before its caller goes
on, and concurrent callers share fsyncs instead of queueing one each."""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path

import pytest

from notification_flow.transcripts import DirectorySync

THREADS, CHANGES = 8, 40


class RecordedFsync:
    """The real os.fsync, with when each call began and ended on one shared sequence, and a slow disk."""

    def __init__(self, real: object, seconds: float = 0.002) -> None:
        self.real, self.seconds = real, seconds
        self.sequence = itertools.count()
        self.calls: list[tuple[int, int]] = []
        self.fail_next = False

    def __call__(self, fd: int) -> None:
        began = next(self.sequence)
        if self.fail_next:
            self.fail_next = False
            raise OSError(5, "Input/output error")
        time.sleep(self.seconds)
        self.real(fd)  # type: ignore[operator]
        self.calls.append((began, next(self.sequence)))


@pytest.fixture
def fsync(monkeypatch: pytest.MonkeyPatch) -> RecordedFsync:
    recorded = RecordedFsync(os.fsync)
    monkeypatch.setattr(os, "fsync", recorded)
    return recorded


def test_every_change_is_covered_by_an_fsync_that_began_after_it(tmp_path: Path, fsync: RecordedFsync) -> None:
    sync = DirectorySync(tmp_path)
    spans: list[tuple[int, int]] = []  # (change made, caller released)
    lock = threading.Lock()

    def publisher(number: int) -> None:
        for change in range(CHANGES):
            (tmp_path / f"{number}-{change}.json").write_bytes(b"{}")
            made = next(fsync.sequence)
            sync.after_change()
            released = next(fsync.sequence)
            with lock:
                spans.append((made, released))

    threads = [threading.Thread(target=publisher, args=(number,)) for number in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(spans) == THREADS * CHANGES
    for made, released in spans:
        assert any(made < began and ended < released for began, ended in fsync.calls), (made, released)
    assert len(fsync.calls) < THREADS * CHANGES / 2  # shared: one fsync served several callers


def test_a_lone_caller_gets_an_fsync_of_its_own_each_time(tmp_path: Path, fsync: RecordedFsync) -> None:
    sync = DirectorySync(tmp_path)
    for _ in range(3):
        sync.after_change()
    assert len(fsync.calls) == 3


def test_a_failed_fsync_fails_its_caller_and_the_next_caller_syncs_again(tmp_path: Path,
                                                                        fsync: RecordedFsync) -> None:
    sync = DirectorySync(tmp_path)
    fsync.fail_next = True
    with pytest.raises(OSError, match="Input/output"):
        sync.after_change()
    assert fsync.calls == [] and sync.synced == 0  # nothing was made durable
    sync.after_change()
    assert len(fsync.calls) == 1 and sync.synced == 2  # both changes now covered
