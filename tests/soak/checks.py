"""Every check, run after every process has stopped: each counts failures into the result (every count
must be zero) and records what the faults amounted to."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from emulator import Emulator
from notification_flow import jsonv2
from notification_flow.api import rejection_reason
from notification_flow.jobs import Job, open_store
from notification_flow.lifecycle import OPEN_STATES
from tests.integration.support import Stack
from tests.soak.options import EPSILON, RETRY_DELAYS, STORED
from tests.soak.records import KillWindow, Run, SoakResult
from tests.soak.stored import StoredTranscripts

# A notification that came before its job id was recorded, while the API could not say whose job it was: 503
# by design (auth.py), and Speechmatics' retry is then applied. Counted apart from the 5xx that must not be.
UNPROVEN = re.compile(r"job=([a-z0-9]+) status=\S+ outcome=job id not proven yet code=503")


def check_everything(stack: Stack, servers: list[Stack], audio: list[Path], run: Run, result: SoakResult,
                     stored: StoredTranscripts) -> None:
    """Every check, after every process has stopped, with the raw material kept as JSON for a post-mortem."""
    rows = open_store(stack.database_url).jobs()
    dump_json(stack.tmp / "jobs.json", [dataclasses.asdict(row) for row in rows])
    dump_json(stack.tmp / "api-jobs.json", run.truth)
    dump_json(stack.tmp / "deliveries.json", run.deliveries)
    check_jobs(run.truth, rows, audio, stored, result)
    check_transcripts(stack.emulator, run.truth, stored, result)
    if "DELETE_AFTER_STORE" in stack.storage:
        check_deleted(stack, rows, result)
    logs = [server.tmp / "server.log" for server in servers]
    check_logs(logs + [log for process in run.clients + run.cronjobs for log in process.logs], result)
    check_deliveries(run.deliveries, run.windows, result, unproven_answers(logs))
    count_leftovers(stack.transcripts, result)


def dump_json(path: Path, data: Any) -> None:
    """Keep the final job table, the API's view and every notification attempt next to the logs: the
    PostgreSQL schema and the emulator are gone after the run, and a failure is only explainable with them."""
    path.write_text(json.dumps(data, indent=1))


def epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def as_finished(job: dict[str, Any]) -> dict[str, Any]:
    """The job as the API finished it: one deleted once stored (DELETE_AFTER_STORE) ended done, or rejected if
    it carries a reason, and is marked `deleted_at_api`."""
    if job["status"] != "deleted":
        return job
    return {**job, "status": "rejected" if rejection_reason(job) else "done", "deleted_at_api": True}


def served_transcript(emulator: Emulator, job_id: str) -> bytes | None:
    """The transcript the API serves, or None once the job is deleted there."""
    try:
        return emulator.transcript_bytes(job_id)
    except KeyError:
        return None


def finished_at(emulator: Emulator, job: dict[str, Any]) -> float:
    """When the API finished a job: its transcript's creation time, or the time of its rejection error (now, for
    a done job already deleted there: later is the safe side to wait from)."""
    if job["status"] == "done":
        served = served_transcript(emulator, job["id"])
        return epoch(json.loads(served)["metadata"]["created_at"]) if served else time.time()
    return epoch(job["errors"][0]["timestamp"])


def check_jobs(truth: dict[str, dict[str, Any]], rows: list[Job], audio: list[Path], stored: StoredTranscripts,
               result: SoakResult) -> None:
    """Each API job must be recorded under its reference, with its id, in the API's final state (a done job
    pointing at its file), and every file must have reached the API.

    A row the API never saw (the killed client's attempt whose answer, swallowed, was a 429 or 503) holds no
    job, so it cannot lose one: it must be submit_failed, or still 'submitting' - cronjob.py leaves such a
    row alone until the client's upload heartbeat has been silent for a minute, in case it is still
    uploading. Any other state for it would be a row claiming a job that does not exist."""
    by_reference = {row.reference: row for row in rows}
    lost, wrong = [], []
    for job_id, job in truth.items():
        row = by_reference.get(((job.get("config") or {}).get("tracking") or {}).get("reference"))
        if row is None or row.job_id != job_id or row.status in OPEN_STATES:
            lost.append(f"{job_id}({row.status if row else 'no row'})")
        elif row.status != job["status"] or (row.status == "done" and not stored.matches(row.transcript, job_id)):
            wrong.append(f"{job_id}({row.status} vs {job['status']})")
    known = {((job.get("config") or {}).get("tracking") or {}).get("reference") for job in truth.values()}
    stray = [row for row in rows if row.reference not in known]
    lost += [f"{row.reference}({row.status}, no API job)" for row in stray
             if row.status not in ("submit_failed", "submitting")]
    never = sorted({path.name for path in audio} - {job["data_name"] for job in truth.values()})
    result.counters["jobs lost"] = len(lost)
    result.examples["jobs lost"] = lost
    result.counters["jobs in a wrong final state"] = len(wrong)
    result.examples["jobs in a wrong final state"] = wrong
    result.counters["audio files that never became a job"] = len(never)
    result.examples["audio files that never became a job"] = never
    result.observed["rows submit_failed (no job was created)"] = sum(r.status == "submit_failed" for r in stray)
    result.observed["rows still 'submitting' (no job; its client could still create one)"] = sum(
        r.status == "submitting" for r in stray)


def check_transcripts(emulator: Emulator, truth: dict[str, dict[str, Any]], stored: StoredTranscripts,
                      result: SoakResult) -> None:
    """Every done job's file (or object) is byte-identical to what the API serves; no other transcript exists."""
    bad = []
    for job_id, job in truth.items():
        if job["status"] == "done":
            found, served = stored.read(job_id), served_transcript(emulator, job_id)
            if found is None:
                bad.append(f"{job_id}(missing)")
            elif served is None and not jsonv2.is_transcript_of(io.BytesIO(found), job_id):  # deleted there
                bad.append(f"{job_id}(not its transcript)")
            elif served is not None and found != served:
                bad.append(f"{job_id}(different)")
    done = {job_id for job_id, job in truth.items() if job["status"] == "done"}
    unexpected = sorted(f"{job_id}.json" for job_id in stored.job_ids() if job_id not in done)
    result.counters["transcripts missing or different"] = len(bad)
    result.examples["transcripts missing or different"] = bad
    result.counters["transcript files of jobs that are not done"] = len(unexpected)
    result.examples["transcript files of jobs that are not done"] = unexpected


def check_deleted(stack: Stack, rows: list[Job], result: SoakResult) -> None:
    """DELETE_AFTER_STORE: every job stored here (done or rejected) is deleted at the API, recorded so on its
    row, and no wish to delete is left waiting."""
    kept = [row.job_id for row in rows if row.status in ("done", "rejected") and row.job_id and (
        row.remote_deleted_at is None or stack.emulator.job(row.job_id)["status"] != "deleted")]
    with open_store(stack.database_url).database.transaction(write=False) as tx:
        pending = [found["job_id"] for found in tx.execute("SELECT job_id FROM remote_deletions")]
    result.counters["stored jobs not deleted at the API"] = len(kept)
    result.examples["stored jobs not deleted at the API"] = kept
    result.counters["deletions still waiting"] = len(pending)
    result.examples["deletions still waiting"] = pending
    result.observed["jobs deleted at the API once stored"] = sum(row.remote_deleted_at is not None for row in rows)


def check_logs(logs: list[Path], result: SoakResult) -> None:
    """storage.py logs each actual write once, in whichever process made it: two lines for one job, across
    all servers and cronjobs, is a transcript written twice. And sqlite must never have said 'locked'."""
    writes: Counter[str] = Counter()
    locked, tracebacks = [], 0
    for log in logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        writes.update(STORED.findall(text))
        locked += [f"{log.name}: {line.strip()[:120]}" for line in text.splitlines() if "database is locked" in line]
        tracebacks += text.count("Traceback (most recent call last)")
    twice = sorted(f"{job_id}(x{count})" for job_id, count in writes.items() if count > 1)
    result.counters["duplicate transcript writes"] = sum(count - 1 for count in writes.values() if count > 1)
    result.examples["duplicate transcript writes"] = twice
    result.counters["'database is locked' errors in the logs"] = len(locked)
    result.examples["'database is locked' errors in the logs"] = locked
    result.observed["transcript writes logged"] = sum(writes.values())
    result.observed["tracebacks in the logs"] = tracebacks


def count_leftovers(transcripts: Path, result: SoakResult) -> None:
    """A SIGKILL mid-write leaves a temporary file in .incoming where bodies are spooled to named files
    (cronjob.py removes those after an hour; on Linux they have no name and vanish with the process); a body
    kept in .unreadable would mean a valid notification was judged unreadable."""
    result.observed["temporary files left in .incoming by kills"] = len(list((transcripts / ".incoming").glob("*")))
    result.observed["bodies kept as unreadable"] = len(list((transcripts / ".unreadable").glob("*")))


def unproven_answers(logs: list[Path]) -> Counter[str]:
    """How many times the servers answered each job's notification 503 because its job id was not proven yet."""
    found: Counter[str] = Counter()
    for log in logs:
        found.update(UNPROVEN.findall(log.read_text(errors="replace") if log.exists() else ""))
    return found


def in_window(delivery: dict[str, Any], windows: list[KillWindow]) -> bool:
    started, ended = epoch(delivery["started_at"]), epoch(delivery["finished_at"])
    return any(window.url == delivery["url"] and started <= window.healthy_at + EPSILON
               and ended >= window.killed_at - EPSILON for window in windows)


def check_deliveries(deliveries: list[dict[str, Any]], windows: list[KillWindow], result: SoakResult,
                     unproven: Counter[str]) -> None:
    """Every notification here is valid, so the server may refuse one (5xx) only while it is being killed or
    is booting, or while its job id is not proven yet (the server logged so), and may never call one invalid
    (4xx)."""
    answered = [d for d in deliveries if isinstance(d["outcome"], int)]
    left = Counter(unproven)
    server_errors = []
    for d in answered:
        if d["outcome"] == 503 and left[d["job_id"]] > 0:
            left[d["job_id"]] -= 1
        elif d["outcome"] >= 500 and not in_window(d, windows):
            server_errors.append(d)
    refusals = [d for d in answered if 400 <= d["outcome"] < 500]
    result.counters["5xx to valid notifications outside kill windows"] = len(server_errors)
    result.examples["5xx to valid notifications outside kill windows"] = [
        f"{d['job_id']}:{d['outcome']}@{d['started_at']}" for d in server_errors]
    result.counters["4xx to valid notifications"] = len(refusals)
    result.examples["4xx to valid notifications"] = [f"{d['job_id']}:{d['outcome']}" for d in refusals]
    # The emulator keeps the last 10,000 attempts; a full log would make every count above an undercount.
    result.counters["notification log full (counts incomplete)"] = int(len(deliveries) >= 10_000)
    first = {(d["job_id"], d["duplicate"]): d for d in deliveries if d["attempt"] == 1}
    copies = [(first[(job_id, False)], d) for (job_id, dup), d in first.items() if dup and (job_id, False) in first]
    last_attempt = len(RETRY_DELAYS) + 1
    result.observed.update({
        "notification attempts": len(deliveries),
        "attempts answered 503 before the job id was proven": sum(unproven.values()),
        "notifications dropped": sum(d["outcome"] == "dropped" for d in deliveries),
        "notifications duplicated": len(copies),
        "  of which sent concurrently (within 50 ms)": sum(
            abs(epoch(dup["started_at"]) - epoch(original["started_at"])) < 0.05 for original, dup in copies),
        "attempts answered 5xx (in or out of kill windows)": sum(d["outcome"] >= 500 for d in answered),
        "attempts that failed to connect or timed out": sum(str(d["outcome"]).startswith("error") for d in deliveries),
        "attempts in kill windows": sum(in_window(d, windows) for d in deliveries if d["outcome"] != "dropped"),
        "notifications that ran out of attempts": sum(
            d["attempt"] == last_attempt and not (isinstance(d["outcome"], int) and d["outcome"] < 300)
            for d in deliveries),
    })


def busy_together(deliveries: list[dict[str, Any]], servers: int) -> int:
    """Whole seconds in which each server answered at least one notification: evidence that the servers
    really worked side by side (on one database and one transcripts directory), not one after the other."""
    urls_by_second: dict[int, set[str]] = {}
    for delivery in deliveries:
        if isinstance(delivery["outcome"], int):
            urls_by_second.setdefault(int(epoch(delivery["started_at"])), set()).add(delivery["url"])
    return sum(len(urls) == servers for urls in urls_by_second.values())


def record_observations(result: SoakResult, run: Run, stats: dict[str, Any], servers: int) -> None:
    """What the faults amounted to in this run, so a reader can tell the soak really exercised them."""
    statuses = Counter(job["status"] for job in run.truth.values())
    result.observed.update({
        "jobs at the API": len(run.truth),
        "  done": statuses["done"],
        "  rejected": statuses["rejected"],
        "API answers 429 injected": stats["injected_429"],
        "API answers 503 injected": stats["injected_503"],
        "  503 answered after the job was created": stats["injected_create_then_fail"],
        "transcript downloads truncated / empty": f"{stats['injected_truncated_transcript']} / "
                                                  f"{stats['injected_empty_transcript']}",
        "done jobs also reported failed": len(run.conflicting),
        "later cronjob.py passes (cron going on)": len(run.settling),
        "API answers 429 for the rate limits: job creations": stats["rate_limited_post_jobs"],
        "API answers 429 for the rate limits: GETs": stats["rate_limited_get"],
        "server SIGKILLs (each restarted)": len(run.windows),
        "seconds in which every server answered notifications": busy_together(run.deliveries, servers),
        "client.py runs that exited non-zero (not killed)": sum(
            process.returncode not in (0, -signal.SIGKILL) for process in run.clients),
        "cronjob.py passes that exited non-zero": sum(process.returncode != 0 for process in run.cronjobs),
    })
    for process in run.cronjobs:
        lines = process.logs[0].read_text(errors="replace").splitlines()
        result.observed[f"{process.name} said"] = next(
            (line for line in reversed(lines) if line.startswith("checked")), "nothing")


def record_timings(result: SoakResult, rows: list[Job], stored_transcripts: StoredTranscripts, run: Run,
                   origin: float) -> None:
    """How long recovery took once the API had finished: the last transcript file appearing (its ctime is
    when it was linked into place) and the last row turning final."""
    last_finish, cronjobs = run.last_finish, run.cronjobs
    stored = stored_transcripts.stored_times()
    final = [row.updated_at for row in rows if row.status not in OPEN_STATES]
    if stored:
        result.timings["last job finished at the API -> last transcript stored"] = max(stored) - last_finish
    if final:
        result.timings["last job finished at the API -> last job final in the DB"] = max(final) - last_finish
    overlap = min(process.ended for process in cronjobs) - max(process.started for process in cronjobs)
    result.timings.update({f"{process.name} pass": process.seconds for process in cronjobs})
    result.timings["cronjob passes overlapping"] = max(0.0, overlap)
    result.timings["whole run"] = time.time() - origin
