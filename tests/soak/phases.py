"""The run itself, phase by phase: submissions under server kills, the API finishing, two overlapping
cronjob.py passes, and the last notifications settling; then every check."""

from __future__ import annotations

import contextlib
import random
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from emulator import Emulator
from notification_flow.jobs import open_store
from notification_flow.lifecycle import OPEN_STATES
from notification_flow.reconcile import ReconcilePolicy
from seaweed import SeaweedFS
from tests import RUNTIME_PYTHON
from tests.integration.support import ROOT, Stack, api_headers, wait_for
from tests.soak.checks import as_finished, check_everything, finished_at, record_observations, record_timings
from tests.soak.faults import ServerKiller, plan_kills, submit_and_kill_client
from tests.soak.handoff import check_handoff, deliver_the_rest, flaky_consumer, handoff_env
from tests.soak.options import (
    CONFLICTING_FRACTION,
    CRON_SECONDS,
    FAULTS,
    RETRY_DELAYS,
    SETTLING_PASSES,
    SLOW_CLIENT_TIMEOUT,
    SLOW_CREATE_MS,
    SUBMITS_PER_SECOND,
    Say,
    SoakOptions,
    emulator_options,
)
from tests.soak.prepare import chunked, make_audio, start_servers
from tests.soak.records import ProcessRun, Run, SoakResult
from tests.soak.stored import StoredTranscripts


def run_soak(options: SoakOptions, database_url: str, workdir: Path, database: str | None = None,
             say: Say | None = None) -> SoakResult:
    """The whole soak on an existing (empty) database; the caller owns the database and the directory."""
    origin = time.time()

    def progress(message: str) -> None:
        if say:
            say(f"[{time.time() - origin:7.1f}s] {message}")

    rng = random.Random(f"{options.seed}:soak")
    database = database or ("postgresql" if database_url.startswith("postgres") else "sqlite")
    result = SoakResult(options.seed, options, database, workdir)
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    audio = make_audio(workdir / "audio", options.jobs, rng)
    with (Emulator(emulator_options(options.seed)) as emulator, object_store(options, workdir) as storage,
          flaky_consumer(options.seed) as consumer):
        settings = {**storage[0], **({"DELETE_AFTER_STORE": "1"} if options.delete_after_store else {}),
                    **handoff_env(consumer)}  # every process hands finished jobs on
        stack = Stack(tmp=workdir, emulator=emulator, database_url=database_url, storage=settings)
        stored = StoredTranscripts(stack.transcripts, storage[0].get("TRANSCRIPTS_URL"), storage[1])
        open_store(database_url)  # the schema, once, before several processes race to create it
        servers = start_servers(stack, options.servers)
        try:
            run = drive(stack, servers, audio, rng, progress)
        finally:
            for server in servers:
                server.stop_server()
        handing_on = deliver_the_rest(stack, progress)
        check_everything(stack, servers, audio, run, result, stored)
        check_handoff(stack, consumer, result, handing_on)
        stats = emulator.stats()
        result.timings["submissions (client.py runs)"] = run.submission_seconds
        record_observations(result, run, stats, len(servers))
        record_timings(result, open_store(database_url).jobs(), stored, run, origin)
    return result


@contextlib.contextmanager
def object_store(options: SoakOptions, workdir: Path) -> Iterator[tuple[dict[str, str], SeaweedFS | None]]:
    """With `--storage s3`: a real SeaweedFS on loopback, a bucket, and the settings every process gets."""
    if options.storage != "s3":
        yield {}, None
        return
    with SeaweedFS(workdir / "seaweedfs") as seaweedfs:
        bucket = seaweedfs.new_bucket(f"soak-{uuid.uuid4().hex[:12]}")
        yield {"TRANSCRIPTS_URL": f"s3://{bucket}/transcripts", **seaweedfs.env()}, seaweedfs


def drive(stack: Stack, servers: list[Stack], audio: list[Path], rng: random.Random, progress: Say) -> Run:
    """The run itself: submissions under server kills, the API finishing, overlapping cronjobs, and the last
    notifications settling. Only waits with deadlines; the kill moments come from `rng`."""
    logs = stack.tmp / "logs"
    expected = len(audio) / SUBMITS_PER_SECOND + len(chunked(audio[1:], len(servers)))
    killer = ServerKiller(servers, stack.transcripts, plan_kills(rng, len(audio), len(servers), expected), progress)
    progress(f"{len(servers)} server(s) up; submitting {len(audio)} jobs, {len(killer.plan)} server kills "
             f"planned over {expected:.0f}s")
    try:
        submitted = time.time()
        killer.start()
        clients = submit_all(servers, audio, logs, rng, progress)
        submission_seconds = time.time() - submitted
        windows = killer.finish(timeout=expected + 300)
    finally:
        killer.abort()
    progress(f"submissions done; {len(windows)} server kills done")
    emulator = stack.emulator
    truth = {job["id"]: as_finished(emulator.job(job["id"])) for job in wait_until_api_finished(stack)}
    last_finish = max((finished_at(emulator, job) for job in truth.values()), default=time.time())
    # With DELETE_AFTER_STORE a done job's transcript may be deleted at any moment: none is reported twice.
    conflicting = [] if "DELETE_AFTER_STORE" in stack.storage else report_conflicting(servers, truth, rng)
    progress(f"the API finished all {len(truth)} jobs; {len(conflicting)} of them also reported failed; "
             "two cronjob.py --all passes")
    cronjobs = run_overlapping_cronjobs(stack, logs)
    progress("; ".join(f"{run.name} exit {run.returncode} in {run.seconds:.1f}s" for run in cronjobs))
    deliveries = wait_until_notifications_settled(
        emulator, set(truth), not_before=last_finish + FAULTS["delay_max_seconds"] + 0.6)
    settling = run_settling_cronjobs(stack, logs)
    progress(f"every notification settled; {len(settling)} later cronjob.py pass(es); checking")
    return Run(truth, deliveries, windows, clients, cronjobs, last_finish, submission_seconds, settling, conflicting)


NOTIFICATION_ATTEMPTS = 4  # as many as Speechmatics' documented example of a failing notification shows


def report_conflicting(servers: list[Stack], truth: dict[str, dict[str, Any]], rng: random.Random) -> list[str]:
    """Some done jobs are reported failed too, then done again with their transcript: the transcript must win,
    whatever the genuine notification did meanwhile."""
    done = sorted(job_id for job_id, job in truth.items() if job["status"] == "done")
    chosen = rng.sample(done, max(1, round(len(done) * CONFLICTING_FRACTION))) if done else []
    for job_id in chosen:
        server = servers[rng.randrange(len(servers))]
        for status, body in (("error", b""), ("success", server.emulator.transcript_bytes(job_id))):
            reference = ((truth[job_id].get("config") or {}).get("tracking") or {}).get("reference")
            for _ in range(NOTIFICATION_ATTEMPTS):  # Speechmatics sends a notification again unless answered 2xx
                answer = server.notify(job_id, status=status, body=body, content_type="application/json",
                                       reference=reference)  # the job's own token, as Speechmatics would send
                if answer.status_code != 503:  # 503: not now (the API could not prove the job's id, say)
                    break
                time.sleep(0.5)
            assert answer.status_code in (200, 202), (job_id, status, answer.status_code, answer.text)
    return chosen


def run_settling_cronjobs(stack: Stack, logs: Path) -> list[ProcessRun]:
    """More passes, as cron would start them, until no job is open (a download may have come back broken).

    A `submitting` row whose client gave up with no job made (every try refused) can only be judged once its
    client could no longer create one: `ReconcilePolicy.could_create_for` after its last heartbeat.
    While such a row is open, passes go on every CRON_SECONDS until then, as cron's would."""
    runs: list[ProcessRun] = []
    store = open_store(stack.database_url)
    policy = ReconcilePolicy()
    judged_after = policy.could_create_for + CRON_SECONDS
    while open_jobs := [job for job in store.jobs() if job.status in OPEN_STATES]:
        submitting = [job.updated_at for job in open_jobs if job.status == "submitting"]
        if len(runs) >= SETTLING_PASSES and not (submitting and store.now() < max(submitting) + judged_after):
            break
        if len(runs) >= SETTLING_PASSES:
            time.sleep(CRON_SECONDS)  # the next cron pass, not sooner
        started = time.time()
        result = stack.cronjob("--all", timeout=600)
        log = logs / f"cronjob-later-{len(runs) + 1}.log"
        log.write_text(result.stdout + result.stderr)
        runs.append(ProcessRun(log.stem, result.returncode, started, time.time(), (log,)))
    return runs


def run_client(server: Stack, files: list[Path], logs: Path, name: str, **env: str) -> ProcessRun:
    """One client.py run over `files`, notifying `server`; its output goes to a log file."""
    started = time.time()
    result = server.run("client.py", *map(str, files), timeout=120 + 2 * len(files), **env)
    log = logs / f"{name}.log"
    log.write_text(result.stdout + result.stderr)
    return ProcessRun(name, result.returncode, started, time.time(), (log,))


def submit_all(servers: list[Stack], files: list[Path], logs: Path, rng: random.Random,
               say: Say) -> list[ProcessRun]:
    """Every file but one through client.py, the chunks taking turns between the servers; the one left over
    goes through the killed client, between two chunks chosen at random."""
    killed_audio, rest = files[0], files[1:]
    chunks = chunked(rest, len(servers))
    kill_before = rng.randrange(len(chunks) + 1)
    slow = rng.randrange(len(chunks)) if chunks else -1
    runs: list[ProcessRun] = []
    for index in range(len(chunks) + 1):
        if index == kill_before:
            runs.append(submit_and_kill_client(servers[0], killed_audio, logs))
            say(runs[-1].name)
        if index < len(chunks):
            server = servers[index % len(servers)]
            slow_api = index == slow
            server.emulator.set_faults(create_latency_ms=SLOW_CREATE_MS if slow_api else 0)
            env = {"SPEECHMATICS_TIMEOUT": SLOW_CLIENT_TIMEOUT} if slow_api else {}
            runs.append(run_client(server, chunks[index], logs, f"client-{index + 1}", **env))
            if slow_api:
                wait_until_created(server, chunks[index])
            say(f"client.py run {index + 1}/{len(chunks)}: {len(chunks[index])} files to {server.webhook_url}"
                f"{' (an API slower to create jobs than it waits)' if slow_api else ''}, "
                f"exit {runs[-1].returncode}, {runs[-1].seconds:.1f}s")
    return runs


def wait_until_created(stack: Stack, files: list[Path], timeout: float = 60) -> None:
    """The slow API creates each job after its client gave up on it: wait until every one the client left
    `submitting` exists, or the API's truth, taken later, could miss a job still being created."""
    names = {str(path) for path in files}
    wanted = {job.reference for job in open_store(stack.database_url).jobs()
              if job.audio in names and job.status == "submitting"}

    def created() -> bool:
        listed = api_jobs(stack)
        return listed is not None and wanted <= {((job.get("config") or {}).get("tracking") or {}).get("reference")
                                                for job in listed}

    wait_for(created, timeout=timeout, message="the slow API to create every job its client gave up on")


def run_overlapping_cronjobs(stack: Stack, logs: Path, timeout: float = 600) -> list[ProcessRun]:
    """Two `cronjob.py --all` passes started together, as two cron hosts (or a slow pass and the next one)
    would: their leases must keep them from working on the same job."""
    processes = []
    for name in ("cronjob-a", "cronjob-b"):
        log = logs / f"{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "cronjob.py"), "--all"], cwd=stack.tmp,
                                       env=stack.env(), stdout=output, stderr=subprocess.STDOUT)
        processes.append((name, process, log, time.time()))
    runs = []
    for name, process, log, started in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        runs.append(ProcessRun(name, process.returncode, started, time.time(), (log,)))
    return runs


def api_jobs(stack: Stack) -> list[dict[str, Any]] | None:
    """Every job as GET /v2/jobs lists it, or None when the API answered with a (fault-injected) error."""
    with contextlib.suppress(requests.RequestException):
        response = requests.get(f"{stack.emulator.url}/jobs", headers=api_headers(), timeout=30,
                                params={"include_deleted": "true"})
        if response.status_code == 200:
            return response.json()["jobs"]
    return None


def wait_until_api_finished(stack: Stack, timeout: float = 120) -> list[dict[str, Any]]:
    """Poll until the API has ended every job it was given (done or rejected)."""
    def finished() -> list[dict[str, Any]] | None:
        jobs = api_jobs(stack)
        return jobs if jobs and all(job["status"] != "running" for job in jobs) else None
    return wait_for(finished, timeout=timeout, interval=0.5, message="the API to finish every job")


def notifications_settled(deliveries: list[dict[str, Any]], job_ids: set[str]) -> bool:
    """True once every job's notification has ended: answered 2xx, dropped, or out of attempts. A job with
    no attempt logged yet is still waiting out its random delay."""
    last_attempt = len(RETRY_DELAYS) + 1
    latest: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for delivery in deliveries:
        key = (delivery["job_id"], delivery["url"], delivery["duplicate"])
        if key not in latest or delivery["attempt"] >= latest[key]["attempt"]:
            latest[key] = delivery
    if not job_ids <= {job_id for job_id, _, duplicate in latest if not duplicate}:
        return False
    return all(entry["outcome"] == "dropped" or entry["attempt"] >= last_attempt
               or (isinstance(entry["outcome"], int) and 200 <= entry["outcome"] < 300) for entry in latest.values())


def wait_until_notifications_settled(emulator: Emulator, job_ids: set[str], not_before: float,
                                     timeout: float = 120) -> list[dict[str, Any]]:
    """Poll until no notification can still arrive: every attempt chain has ended, every first attempt
    (duplicates start up to 0.5 s after theirs) is past its delay, and the log stopped growing."""
    previous: list[int] = [-1]

    def settled() -> list[dict[str, Any]] | None:
        deliveries = emulator.deliveries()
        stable = len(deliveries) == previous[0]
        previous[0] = len(deliveries)
        ready = time.time() >= not_before and notifications_settled(deliveries, job_ids)
        return deliveries if ready and stable else None
    return wait_for(settled, timeout=timeout, interval=0.5, message="every notification to settle")
