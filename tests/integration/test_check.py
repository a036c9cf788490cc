"""client.py --check: one line that says whether the notification reached server.py and stored the transcript,
was refused by it (and why), or never arrived; exit 0 only in the first case."""

from __future__ import annotations

from tests.integration.support import Stack


def checked(stack: Stack, **env: str) -> tuple[int, str]:
    result = stack.client("--check", "--check-timeout", "30", **env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout.strip().splitlines()[-1]


def test_check_with_the_server_up_says_delivered_and_stored(served: Stack) -> None:
    code, line = checked(served)
    assert code == 0 and "delivered and stored" in line, line
    assert ".json" in line


def test_check_with_the_server_down_says_never_delivered_and_why(stack: Stack) -> None:
    code, line = checked(stack)
    assert code == 1 and "never delivered" in line and "Connection refused" in line.replace("connection", "Connection")
    assert "status=" not in line and "id=" not in line  # the notification URL's query is not repeated


def test_check_with_a_wrong_secret_says_our_server_refused_it_as_unauthenticated(served: Stack) -> None:
    code, line = checked(served, WEBHOOK_SECRET="not-the-secret-the-server-has-0123")
    assert code == 1 and "refused by our server" in line and "401" in line and "unauthenticated" in line, line
    assert "status code Speechmatics recorded" in line  # says where the outcome comes from
