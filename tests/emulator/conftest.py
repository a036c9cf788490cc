"""Fixtures of the emulator tests: a fast emulator in-process, and a recording webhook receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from emulator import Emulator, EmulatorOptions
from tests.emulator.support import API_KEY, Receiver

FAST = {"api_key": API_KEY, "processing_seconds": 0.2, "notify_retry_delays": (0.1, 0.2, 0.3),
        "notify_timeout": 2.0, "seed": 1,
        "default_wait_seconds": 0.0}  # these tests ask for unfinished jobs on purpose; test_api checks the ~2 s default


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start emulators with fast test options plus overrides; all are stopped after the test."""
    started: list[Emulator] = []

    def make(**overrides: Any) -> Emulator:
        emulator = Emulator(EmulatorOptions(**{**FAST, **overrides})).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emu(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()
