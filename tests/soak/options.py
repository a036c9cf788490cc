"""What every soak run shares: the emulator's faults and timings (fixed, so runs compare), and the
few options that vary between runs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator import EmulatorOptions
from tests.integration.support import API_KEY

# The emulator's faults, all on at once. 5% of API calls: half 429 (with Retry-After), half 503; 2% of job
# creations answered 503 after the job was made; 5% of transcript downloads truncated or empty.
FAULTS: dict[str, Any] = {
    "drop_fraction": 0.3, "duplicate_fraction": 0.2, "delay_max_seconds": 2.0,
    "api_429_fraction": 0.025, "api_503_fraction": 0.025, "retry_after_seconds": 1, "reject_fraction": 0.05,
    "create_then_fail_fraction": 0.02, "truncate_transcript_fraction": 0.03, "empty_transcript_fraction": 0.02,
}
# One client.py run meets an API slower to create a job than the client waits: every one of its
# submissions is ambiguous, and each job must still be found by its reference and finished.
SLOW_CREATE_MS = 1500
SLOW_CLIENT_TIMEOUT = "1"
CONFLICTING_FRACTION = 0.02  # done jobs also reported failed, before their transcript arrives again
SETTLING_PASSES = 5  # later cronjob.py passes, as cron would run them, while a download failed
CRON_SECONDS = 15  # between later passes once those are done, while a `submitting` row waits to be judged
PROCESSING_SECONDS = 0.5
RETRY_DELAYS = (0.2, 0.5, 1.0)  # Speechmatics retries for about a minute; short here, so retries run out often
NOTIFY_TIMEOUT = 10.0
SUBMITS_PER_SECOND = 9.5  # client.py's own pace, under the documented 10 job creations per second
# Files per client.py run. Runs take turns between the servers (two runs at once would exceed 10 creations/s
# together), and notifications trail a run by up to ~3 s, so short runs keep every server busy at once.
CHUNK_SIZE = 50
MAX_DOWNTIME_SECONDS = 2.5  # with the restart, longer than the retry schedule: some notifications run out
JOBS_PER_KILL = 100
EPSILON = 0.01  # the emulator logs times in whole milliseconds
# cronjob.py logs "stored transcript <id>.json", server.py "stored=<id>.json", once per file actually written
STORED = re.compile(r"(?:stored transcript |stored=)([a-z0-9]+)\.json")
Say = Callable[[str], None]  # where progress lines go (stderr for the command, print for pytest)


@dataclass(frozen=True)
class SoakOptions:
    """What varies between runs; everything else (faults, timings) is fixed above so runs compare."""

    jobs: int = 1000
    seed: int = 0
    servers: int = 1
    storage: str = "dir"  # "dir": one shared TRANSCRIPTS_DIR; "s3": TRANSCRIPTS_URL on a real SeaweedFS
    delete_after_store: bool = False  # every process with DELETE_AFTER_STORE=1: jobs go at the API once stored


def emulator_options(seed: int) -> EmulatorOptions:
    """Short processing and retry times so 1,000 jobs fit in minutes; the emulator's seed is the soak's, so
    the same jobs see the same drops, duplicates, delays, API faults and rejections when replayed."""
    return EmulatorOptions(api_key=API_KEY, seed=seed, processing_seconds=PROCESSING_SECONDS,
                           notify_retry_delays=RETRY_DELAYS, notify_timeout=NOTIFY_TIMEOUT, **FAULTS)
