"""Fixtures for the in-process tests: a fresh sqlite job store and transcript directory in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from notification_flow.jobs import JobStore, open_store
from notification_flow.transcripts import TranscriptFiles


@pytest.fixture
def fresh_store(tmp_path: Path) -> JobStore:
    return open_store(f"sqlite:///{tmp_path / 'jobs.db'}")


@pytest.fixture
def transcripts(tmp_path: Path) -> TranscriptFiles:
    return TranscriptFiles(tmp_path / "transcripts").ensure_directories()
