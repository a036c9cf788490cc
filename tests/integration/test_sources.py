"""client.py --url: audio Speechmatics fetches itself, whose query string and headers are secrets that reach
no row, log line, --list or /metrics; a fetch that fails ends `rejected` with the reason; and a file too large
to upload is refused with a line that says to use --url."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import requests

from tests.integration.support import ROOT, Stack, free_port, json_lines, wait_for

SIGNATURE = "sig-Zq81x0presigned"
HEADER_SECRET = "hdr-Kp44secretvalue"


@contextlib.contextmanager
def signed_audio_server() -> Iterator[tuple[str, list[str]]]:
    """A web server that gives example.wav under /calls/ only to a request with the signature and the header, as
    a presigned object store URL does (403 without them, 404 elsewhere); yields its base URL and what it served."""
    audio, served = (ROOT / "example.wav").read_bytes(), []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if not parts.path.startswith("/calls/"):
                self.send_error(404)
                return
            if parse_qs(parts.query).get("sig") != [SIGNATURE] or self.headers.get("X-Audio-Token") != HEADER_SECRET:
                self.send_error(403)
                return
            served.append(parts.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(audio)))
            self.end_headers()
            self.wfile.write(audio)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", served
    finally:
        server.shutdown()
        server.server_close()


def listed(stack: Stack) -> list[dict]:
    return json_lines(stack.client("--list", "--json").stdout)


def settled(stack: Stack, count: int) -> list[dict]:
    def all_final() -> list[dict] | None:
        jobs = listed(stack)
        return jobs if len(jobs) == count and all(job["status"] not in ("submitting", "running") for job in jobs) \
            else None
    return wait_for(all_final, timeout=60, message=f"{count} jobs to settle")


def database_text(stack: Stack) -> str:
    """Everything the database holds: the sqlite file's bytes, or every row of every table of the schema."""
    if stack.database_url.startswith("sqlite"):
        return Path(stack.database_url[len("sqlite:///"):]).read_bytes().decode("latin-1")
    with psycopg.connect(stack.database_url) as conn:
        tables = [row[0] for row in conn.execute("SELECT table_name FROM information_schema.tables "
                                                 "WHERE table_schema = current_schema()")]
        return "\n".join(str(conn.execute(f'SELECT * FROM "{table}"').fetchall())  # noqa: S608 (names from the catalogue)
                         for table in tables)


def test_a_signed_url_and_its_header_reach_speechmatics_and_nothing_we_keep(served: Stack) -> None:
    with signed_audio_server() as (base, fetched):
        url = f"{base}/calls/monday.wav?sig={SIGNATURE}&expires=1999999999"
        submitted = served.client("--url", url, "--url-header", f"X-Audio-Token: {HEADER_SECRET}")
        assert submitted.returncode == 0, submitted.stderr
        [job] = settled(served, 1)
        assert fetched == ["/calls/monday.wav"]  # the emulator presented the signature and the header
    assert job["status"] == "done" and job["audio"] == f"{base}/calls/monday.wav"
    assert (served.transcripts / f"{job['job_id']}.json").exists()
    config = served.emulator.job(job["job_id"])["config"]
    assert config["fetch_data"] == {"url": url, "auth_headers": [f"X-Audio-Token: {HEADER_SECRET}"]}
    passed = served.cronjob("--all")
    table = served.client("--list")
    metrics = requests.get(f"http://127.0.0.1:{served.server_port}/metrics", timeout=5).text
    logs = [submitted.stdout, submitted.stderr, passed.stdout, passed.stderr, table.stdout, table.stderr,
            served.server_log(), metrics, database_text(served)]
    for text in logs:
        assert SIGNATURE not in text and HEADER_SECRET not in text and "expires=" not in text
    assert f"{base}/calls/monday.wav" in table.stdout + submitted.stdout + submitted.stderr


@pytest.mark.emulator(fetch_retry_delays=(0.05, 0.05))
def test_a_url_that_cannot_be_fetched_ends_rejected_with_the_reason_and_no_signature(served: Stack) -> None:
    with signed_audio_server() as (base, _):
        missing = f"{base}/calls/gone.wav?sig=wrong-{SIGNATURE}"
        unreachable = f"http://127.0.0.1:{free_port()}/calls/away.wav?sig={SIGNATURE}"
        submitted = served.client("--url", missing, "--url", unreachable)
        assert submitted.returncode == 0, submitted.stderr
        jobs = {job["audio"]: job for job in settled(served, 2)}
    refused, away = jobs[f"{base}/calls/gone.wav"], jobs[unreachable.split("?")[0]]
    assert refused["status"] == "rejected" and "http status 403" in refused["error"]
    assert away["status"] == "rejected" and "Audio fetch error" in away["error"]
    assert unreachable.split("?")[0] in away["error"]  # the reason names the URL, without its signature
    table = served.client("--list")
    assert "Audio fetch error" in table.stdout
    for text in (table.stdout, served.server_log(), database_text(served)):
        assert SIGNATURE not in text


def test_a_url_that_404s_ends_rejected(served: Stack) -> None:
    with signed_audio_server() as (base, _):
        assert served.client("--url", f"{base}/nothing-here.wav").returncode == 0
        [job] = settled(served, 1)
    assert job["status"] == "rejected" and "http status 404" in job["error"]


def test_a_file_of_a_gigabyte_is_refused_with_a_line_that_says_to_use_url(stack: Stack) -> None:
    huge = stack.tmp / "huge.wav"
    with huge.open("wb") as file:
        file.write(b"RIFF")
        os.truncate(file.fileno(), 1_000_000_000)  # sparse: costs no disk
    result = stack.client(str(huge))
    assert result.returncode == 1
    assert "huge.wav" in result.stderr and "--url" in result.stderr and "Traceback" not in result.stderr
    assert stack.client("--list", "--json").stdout.strip() == ""  # nothing recorded for it


def test_a_malformed_url_header_is_refused_without_echoing_its_value(stack: Stack) -> None:
    result = stack.client("--url", "http://127.0.0.1:9/a.wav", "--url-header", f"no colon {HEADER_SECRET}")
    assert result.returncode == 2 and "--url-header" in result.stderr and HEADER_SECRET not in result.stderr
    assert stack.client("--url", "ftp://127.0.0.1/a.wav").returncode == 2
