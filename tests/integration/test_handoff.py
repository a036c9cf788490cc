"""The hand-off, process-level: real server.py and cronjob.py processes hand every finished job to a consumer on
loopback, at least once, signed, with a stable webhook-id, whatever the consumer does (fails, is down, dies
before answering, answers too late), by POST or by command, on both databases."""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import RUNTIME_PYTHON
from tests.integration.handoff_consumer import SECRET, Consumer, consumer_running
from tests.integration.support import ROOT, Stack, free_port, json_lines, submit_like_client, wait_for

TRANSCRIPT = {"contents": ["transcript"]}


def handoff_env(consumer: Consumer, **extra: Any) -> dict[str, Any]:
    return {"HANDOFF_URL": consumer.url, "HANDOFF_SECRET": SECRET, "HANDOFF_TIMEOUT": "1", **extra}


def finished_jobs(stack: Stack, count: int) -> list[str]:
    """`count` jobs created the way client.py does, notified to our server, done."""
    job_ids = [submit_like_client(stack, TRANSCRIPT)[1] for _ in range(count)]
    wait_for(lambda: all((job := stack.store().find(j)) and job.status == "done" for j in job_ids), timeout=60,
             message="every job done")
    return job_ids


def assert_each_handed_on(stack: Stack, consumer: Consumer, job_ids: list[str], timeout: float = 90) -> None:
    """Every job's event taken by the consumer, with its body, and every attempt of one event under one id."""
    wait_for(lambda: {e["data"]["job_id"] for e in consumer.delivered().values()} >= set(job_ids), timeout=timeout,
             message="every job handed on")
    for event in consumer.delivered().values():
        job = stack.store().find(event["data"]["job_id"])
        assert event["type"] == "transcript.ready"
        assert event["data"] == {"job_id": job.job_id, "reference": job.reference, "audio": job.audio,
                                 "status": "done", "transcript": job.transcript, "error": None}
    ids_by_body: dict[str, set[str]] = {}
    for seen in consumer.received:
        ids_by_body.setdefault(seen["body"], set()).add(seen["headers"]["webhook-id"])
    assert all(len(ids) == 1 for ids in ids_by_body.values())  # retries keep the event's id


def test_a_consumer_failing_its_first_deliveries_gets_every_job_from_the_server(stack: Stack) -> None:
    with consumer_running(plan=["fail", "fail"]) as consumer:
        stack.start_server(**handoff_env(consumer))
        job_ids = finished_jobs(stack, 3)
        assert_each_handed_on(stack, consumer, job_ids)
        listed = {job["job_id"]: job["handoff"] for job in json_lines(stack.client("--list", "--json").stdout)}
        assert listed == dict.fromkeys(job_ids, "delivered")
        metrics = requests.get(f"http://127.0.0.1:{stack.server_port}/metrics", timeout=10).text
        assert 'transcribe_handoff_deliveries_total{result="delivered"} 3.0' in metrics
        assert 'transcribe_handoff_deliveries_total{result="failed"} 2.0' in metrics
        assert "transcribe_handoff_backlog 0.0" in metrics and "transcribe_handoff_dead_events 0.0" in metrics
        assert "transcribe_handoff_oldest_undelivered_age_seconds 0.0" in metrics


def test_a_consumer_killed_before_answering_or_slower_than_the_timeout_still_gets_it(stack: Stack) -> None:
    with consumer_running(plan=["hang-up", "slow"]) as consumer:
        stack.start_server(**handoff_env(consumer))
        (job_id,) = finished_jobs(stack, 1)
        assert_each_handed_on(stack, consumer, [job_id])
        attempts = [seen["headers"] for seen in consumer.received]
        assert len({headers["webhook-id"] for headers in attempts}) == 1
        assert len(attempts) >= 3


def test_a_killed_server_and_a_consumer_down_for_cronjob_passes_lose_nothing(stack: Stack) -> None:
    consumer = Consumer()  # not listening yet: down
    stack.start_server(**handoff_env(consumer))
    job_ids = finished_jobs(stack, 2)
    stack.stop_server(signal.SIGKILL)
    for _ in range(2):
        assert stack.cronjob(**handoff_env(consumer)).returncode == 0
    assert consumer.received == []
    loop = subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "cronjob.py"), "--loop", "0.5"], cwd=stack.tmp,
                            env=stack.env(**handoff_env(consumer)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        consumer.start()  # back: the next passes deliver what fell due
        assert_each_handed_on(stack, consumer, job_ids)
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(timeout=30)
        consumer.stop()


def test_a_command_gets_every_event_on_its_stdin_and_the_group_may_read_the_file(stack: Stack, tmp_path: Path) -> None:
    sink = tmp_path / "sink"
    sink.mkdir()
    script = tmp_path / "take event.py"  # a space: the command is split as a shell would, run without one
    script.write_text("import os, sys\n"
                      "path = os.path.join(sys.argv[1], os.environ['WEBHOOK_ID'] + '.json')\n"
                      "open(path, 'wb').write(sys.stdin.buffer.read())\n")
    command = f"{sys.executable} '{script}' '{sink}'"
    stack.start_server(HANDOFF_COMMAND=command, TRANSCRIPTS_MODE="640")  # a consumer in the group reads them
    job_ids = finished_jobs(stack, 2)
    wait_for(lambda: len(list(sink.glob("*.json"))) == 2, timeout=60, message="both events taken")
    events = [json.loads(path.read_text()) for path in sink.glob("*.json")]
    assert {event["data"]["job_id"] for event in events} == set(job_ids)
    assert all(event["data"]["transcript"] == str(stack.transcripts / f"{event['data']['job_id']}.json")
               for event in events)
    assert {Path(event["data"]["transcript"]).stat().st_mode & 0o777 for event in events} == {0o640}


def test_redeliver_sends_a_jobs_event_again_with_its_own_id(stack: Stack) -> None:
    with consumer_running() as consumer:
        stack.start_server(**handoff_env(consumer))
        (job_id,) = finished_jobs(stack, 1)
        assert_each_handed_on(stack, consumer, [job_id])
        first = consumer.received[-1]["headers"]["webhook-id"]
        result = stack.cronjob("--redeliver", job_id, **handoff_env(consumer))
        assert result.returncode == 0, result.stderr
        assert "1 events due again" in result.stdout
        again = stack.cronjob("--redeliver", "--since", "1h", **handoff_env(consumer))
        assert again.returncode == 0, again.stderr
        assert [seen["headers"]["webhook-id"] for seen in consumer.received].count(first) >= 3


def test_without_a_handoff_setting_nothing_is_recorded(served: Stack) -> None:
    finished_jobs(served, 1)
    with served.store().database.transaction(write=False) as tx:
        assert tx.execute("SELECT COUNT(*) AS n FROM handoff_events")[0]["n"] == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_servers_and_two_cronjobs_never_deliver_one_event_at_once(stack: Stack) -> None:
    with consumer_running(plan=["fail"] * 6, delay=0.3) as consumer:
        env = handoff_env(consumer, HANDOFF_TIMEOUT="2")
        stack.start_server(**env)
        first = stack.server
        second = Stack(tmp=stack.tmp / "second", emulator=stack.emulator, database_url=stack.database_url)
        second.tmp.mkdir()
        second.start_server(TRANSCRIPTS_DIR=stack.transcripts, **env)
        loops = [subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "cronjob.py"), "--loop", "0.2"], cwd=stack.tmp,
                                  env=stack.env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(2)]
        try:
            job_ids = finished_jobs(stack, 4) + finished_jobs(second, 4)
            assert_each_handed_on(stack, consumer, job_ids)
        finally:
            for loop in loops:
                loop.send_signal(signal.SIGTERM)
                loop.wait(timeout=30)
            second.stop_server()
        assert first is not None
        by_event: dict[str, list[tuple[float, float]]] = {}
        for seen in consumer.received:
            by_event.setdefault(seen["headers"]["webhook-id"], []).append(
                (seen["started"], seen.get("ended", seen["started"])))
        for spans in by_event.values():
            spans.sort()
            assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(spans))


def test_the_example_consumer_verifies_dedups_and_reads_the_transcript(stack: Stack, tmp_path: Path) -> None:
    port, output = free_port(), tmp_path / "handed-on"
    log = (tmp_path / "consumer.log").open("w")
    consumer = subprocess.Popen([RUNTIME_PYTHON, str(ROOT / "examples" / "handoff_consumer.py"), "--port", str(port),
                                 "--database", str(tmp_path / "consumer.db"), "--output", str(output)],
                                env=stack.env(HANDOFF_SECRET=SECRET), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/handoff"
    try:
        wait_for(lambda: _answers(url), message="the example consumer to listen")
        assert requests.post(url, data=b"{}", headers={"webhook-id": "msg_x", "webhook-timestamp": "1",
                                                       "webhook-signature": "v1,AAAA"}, timeout=10).status_code == 401
        env = {"HANDOFF_URL": url, "HANDOFF_SECRET": SECRET}
        stack.start_server(**env)
        (job_id,) = finished_jobs(stack, 1)
        text = wait_for(lambda: (output / f"{job_id}.txt").is_file() and (output / f"{job_id}.txt").read_text(),
                        message="the consumer to write the words")
        words = json.loads((stack.transcripts / f"{job_id}.json").read_text())["results"]
        assert text.split() == [word["alternatives"][0]["content"] for word in words]
        assert stack.cronjob("--redeliver", job_id, **env).returncode == 0  # delivered again: taken once
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)
    assert (tmp_path / "consumer.log").read_text().count("took transcript.ready") == 1


def _answers(url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=1).status_code == 405
    return False


def test_redeliver_needs_one_job_or_since_and_a_way_to_deliver(stack: Stack) -> None:
    for args in (("--redeliver",), ("--since", "2h"), ("--redeliver", "abcdefghij", "--since", "2h")):
        result = stack.cronjob(*args, HANDOFF_COMMAND="true")
        assert (result.returncode, result.stdout) == (2, ""), args
        assert len(result.stderr.strip().splitlines()) == 1 and "--redeliver" in result.stderr
    without = stack.cronjob("--redeliver", "abcdefghij")
    assert without.returncode == 2 and "HANDOFF_URL or HANDOFF_COMMAND" in without.stderr
