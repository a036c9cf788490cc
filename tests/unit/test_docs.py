"""The documentation a newcomer reads: short enough to read, every link leads somewhere, and the token format
it states is the one the server checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path

import pytest

from notification_flow.auth import job_token

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_fits_in_two_hundred_lines_and_shows_how_to_run_it_by_hand() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "## Running it by hand" in text
    for command in ("make venv", ". .venv/bin/activate", "python -m emulator", "python server.py",
                    "python client.py", "python cronjob.py", "make demo", "make test"):
        assert command in text, command


def test_the_readme_explains_the_hand_off_with_its_event_and_the_consumers_dedup_line() -> None:
    section = (ROOT / "README.md").read_text().split("## The hand-off", 1)[1].split("\n## ", 1)[0]
    for word in ("HANDOFF_URL", "HANDOFF_SECRET", "HANDOFF_COMMAND", '"type": "transcript.ready"', '"job_id"',
                 '"reference"', '"audio"', '"status"', '"transcript"', '"error"', 'headers["webhook-id"]'):
        assert word in section, word


def test_the_readme_shows_url_format_and_check_with_their_output() -> None:
    text = (ROOT / "README.md").read_text()
    for command, output in (("python client.py --url", ": job "), ("--format srt,txt", ".srt"),
                            ("python client.py --check", "check: job ")):
        assert command in text and output in text.split(command, 1)[1].split("```", 1)[0], command


def test_the_benchmarks_page_fits_in_a_hundred_lines() -> None:
    assert len((ROOT / "docs" / "benchmarks.md").read_text().splitlines()) <= 100


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.MULTILINE)
            slugs = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
            assert anchor in slugs, f"{page.name}: {target}"


def test_the_documented_token_format_is_the_one_the_server_checks() -> None:
    secret, reference = "a-webhook-secret-of-the-right-size", "0f3c6a1e9b8d4c55a7a3d0e5f1b2c3d4"
    signature = hmac.new(secret.encode(), f"v1.{reference}".encode(), hashlib.sha256).digest()
    documented = f"v1.{reference}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert job_token(secret, reference) == documented
    assert "Bearer v1.<reference>.<base64url HMAC-SHA256(WEBHOOK_SECRET, \"v1.<reference>\")>" in (
        ROOT / "docs" / "who-may-notify.md").read_text()
