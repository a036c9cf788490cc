"""The faults the soak causes itself, on top of the emulator's: servers SIGKILLed and restarted at seeded
moments, and a client killed between submitting a job and recording its id."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from tests import RUNTIME_PYTHON
from tests.integration.support import ROOT, Stack, api_headers, blackhole, wait_for
from tests.soak.options import JOBS_PER_KILL, MAX_DOWNTIME_SECONDS, Say
from tests.soak.prepare import start_server
from tests.soak.records import KillWindow, ProcessRun


@dataclass(frozen=True)
class Kill:
    """One planned SIGKILL: `at` seconds after submissions start, of server `server`, down for `downtime` s."""

    at: float
    server: int
    downtime: float


def plan_kills(rng: random.Random, jobs: int, servers: int, expected_seconds: float) -> list[Kill]:
    """About one SIGKILL per JOBS_PER_KILL jobs (at least one), at random moments spread over the time the
    submissions should take, each with a random downtime before the restart. Not more: with the restart,
    each kill takes a server away for a second or three, and notifications must mostly find it up."""
    count = max(1, round(jobs / JOBS_PER_KILL))
    moments = sorted(rng.uniform(0.05, 0.95) * expected_seconds for _ in range(count))
    return [Kill(at, rng.randrange(servers), rng.uniform(0, MAX_DOWNTIME_SECONDS)) for at in moments]


class ServerKiller:
    """SIGKILLs servers at the planned moments and restarts them after the planned downtime.

    It runs in a thread so that submissions and notifications carry on meanwhile, and records every window
    from the kill until the restarted server is healthy: attempts that meet a dying or booting server are
    the only 5xx (or refused connections) the run excuses."""

    def __init__(self, servers: list[Stack], transcripts: Path, plan: list[Kill], say: Say | None = None) -> None:
        self.servers, self.transcripts, self.plan, self.say = servers, transcripts, plan, say
        self.windows: list[KillWindow] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._origin = 0.0
        self._thread = threading.Thread(target=self._run, name="server-killer", daemon=True)

    def start(self) -> ServerKiller:
        self._origin = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for kill in self.plan:
                if self._stop.wait(max(0.0, self._origin + kill.at - time.monotonic())):
                    return
                server = self.servers[kill.server]
                killed_at = time.time()
                server.stop_server(signal.SIGKILL)
                self._stop.wait(kill.downtime)  # a random downtime, cut short only when the run is aborted
                start_server(server, self.transcripts)
                self.windows.append(KillWindow(server.webhook_url, killed_at, time.time()))
                if self.say:
                    self.say(f"server {kill.server + 1} SIGKILLed, down {kill.downtime:.1f}s, healthy again after "
                             f"{self.windows[-1].healthy_at - killed_at:.1f}s")
        except BaseException as error:  # reported by finish(): a server that cannot restart fails the run
            self.error = error

    def finish(self, timeout: float) -> list[KillWindow]:
        """Wait for the whole plan to have happened (every server is up again afterwards)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the server kill plan did not finish within {timeout:.0f}s")
        if self.error is not None:
            raise AssertionError(f"restarting a killed server failed: {self.error}") from self.error
        return self.windows

    def abort(self) -> None:
        self._stop.set()
        self._thread.join(60)


def listed_job_id(stack: Stack, data_name: str) -> str | None:
    """The id of the newest job with this data_name, if the API lists it now (None on a 429/503 fault)."""
    with contextlib.suppress(requests.RequestException):
        response = requests.get(f"{stack.emulator.url}/jobs", params={"limit": 20}, headers=api_headers(),
                                timeout=5)
        if response.status_code == 200:
            return next((job["id"] for job in response.json()["jobs"] if job["data_name"] == data_name), None)
    return None


def submit_and_kill_client(stack: Stack, audio: Path, logs: Path, attempts: int = 3) -> ProcessRun:
    """Submit one file through a proxy that forwards the upload but swallows the answer, and SIGKILL the
    client once the API lists the job: a job the API has and our database only knows as 'submitting'.

    If the swallowed answer was an injected 429/503 no job exists; the client is killed all the same (its
    row is one cronjob.py must mark submit_failed) and the file is tried again."""
    started = time.time()
    job_id: str | None = None
    log_files: list[Path] = []
    with blackhole(stack.emulator.url) as swallowing_url:
        for attempt in range(1, attempts + 1):
            log = logs / f"killed-client-{attempt}.log"
            log_files.append(log)
            with log.open("wb") as output:
                client = subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "client.py"), str(audio)], cwd=stack.tmp,
                                          env=stack.env(SPEECHMATICS_BATCH_URL=swallowing_url), stdout=output,
                                          stderr=subprocess.STDOUT)
                try:
                    job_id = wait_for(lambda: listed_job_id(stack, audio.name), timeout=10, interval=0.1,
                                      message=f"the API to list the job for {audio.name}")
                except AssertionError:
                    job_id = None
                finally:
                    client.send_signal(signal.SIGKILL)
                    client.wait(timeout=10)
            if job_id:
                break
    return ProcessRun(f"killed client ({attempt} attempt(s), job {job_id})", -signal.SIGKILL if job_id else None,
                      started, time.time(), tuple(log_files))
