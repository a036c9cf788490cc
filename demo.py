"""`make demo`: the whole flow on this machine, against the local Speechmatics emulator.

It starts the emulator and server.py, submits the bundled sample with client.py, waits for the webhook to
store the transcript, then loses a notification on purpose and lets cronjob.py recover it; each finished job
is handed on to examples/handoff_consumer.py, a stand-in for your application. Every command
is printed as you would type it, followed by its output. Everything is written under ./demo/.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent
WORK = ROOT / "demo"
API_KEY = "demo-api-key"
HANDOFF_SECRET = "whsec_ZGVtby1oYW5kb2ZmLXNlY3JldC0wMTIzNDU2Nzg5"  # noqa: S105 (the demo's own, on loopback)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def say(text: str) -> None:
    print(f"\n# {text}", flush=True)


def run(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    print(f"$ python {' '.join(command)}", flush=True)
    result = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, text=True, capture_output=True,
                            timeout=120, check=False)
    print((result.stdout + result.stderr).rstrip(), flush=True)
    if result.returncode:
        raise SystemExit(f"demo failed: {command[0]} exited {result.returncode}")
    return result


def wait_until(predicate, what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo failed: timed out waiting for {what}")
        time.sleep(0.1)


def jobs(env: dict[str, str]) -> list[dict]:
    """Every recorded job: `--list --json` prints one JSON object per line, newest first."""
    out = subprocess.run([sys.executable, "client.py", "--list", "--json", "--limit", "0"], cwd=ROOT, env=env,
                         text=True, capture_output=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    emulator = subprocess.Popen([sys.executable, "-m", "emulator", "--port", "0", "--api-key", API_KEY,
                                 "--processing-seconds", "1", "--notify-retry-delays", "0.5,1,1"],
                                cwd=ROOT, stdout=subprocess.PIPE, text=True)
    url = emulator.stdout.readline().strip() if emulator.stdout else ""
    if not url.startswith("http"):
        raise SystemExit("demo failed: the emulator did not start")
    return emulator, url


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    emulator, batch_url = start_emulator()
    port, consumer_port = free_port(), free_port()
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning",
           "SPEECHMATICS_API_KEY": API_KEY, "SPEECHMATICS_BATCH_URL": batch_url,
           "WEBHOOK_URL": f"http://127.0.0.1:{port}/webhook", "WEBHOOK_SECRET": "demo-webhook-secret-0123456789",
           "DATABASE_URL": f"sqlite:///{WORK / 'jobs.db'}", "TRANSCRIPTS_DIR": str(WORK / "transcripts"),
           "HANDOFF_URL": f"http://127.0.0.1:{consumer_port}/handoff", "HANDOFF_SECRET": HANDOFF_SECRET}
    consumer = start_consumer(env, consumer_port)
    server = subprocess.Popen([sys.executable, "server.py", "--port", str(port), "--workers", "2"], cwd=ROOT,
                              env=env, stderr=(WORK / "server.log").open("w"), start_new_session=True)
    try:
        say(f"The Speechmatics emulator listens at {batch_url}; server.py at {env['WEBHOOK_URL']}")
        wait_until(lambda: _healthy(port), "server.py to start")

        say("1. Submit the sample. The row is recorded before the upload; the webhook will finish it.")
        run(env, "client.py")
        wait_until(lambda: all(j["status"] == "done" for j in jobs(env)), "the notification")
        run(env, "client.py", "--list")
        first = jobs(env)[0]
        words = [r["alternatives"][0]["content"] for r in json.loads(Path(first["transcript"]).read_text())["results"]]
        say(f"Stored {first['transcript']} ({len(words)} words): {' '.join(words[:12])} ...")
        [notification] = _remote_job(batch_url, first["job_id"])["config"]["notification_config"]
        say("The job's notification header, as Speechmatics holds it (GET /v2/jobs/{id}): this job's own token, "
            "never WEBHOOK_SECRET")
        print(f"$ curl -H 'Authorization: Bearer ...' {batch_url}/jobs/{first['job_id']}?wait=0")
        print(f"auth_headers: {notification['auth_headers']}")
        if env["WEBHOOK_SECRET"] in json.dumps(notification):
            raise SystemExit("demo failed: the secret travelled with the job")

        say("2. Now the notification is lost (the emulator drops it), as happens in production.")
        _set_faults(batch_url, drop_fraction=1.0)
        run(env, "client.py")
        lost = next(j for j in jobs(env) if j["status"] != "done")
        wait_until(lambda: _remote_status(batch_url, lost["job_id"]) == "done", "the job to finish")
        say(f"Speechmatics finished {lost['job_id']}, but our database still says: {lost['status']}")

        say("3. cronjob.py asks Speechmatics, fetches the transcript, and marks the job done.")
        run(env, "cronjob.py", "--all")
        run(env, "client.py", "--list")
        say("4. The hand-off: server.py and cronjob.py POSTed each finished job, signed, to the example consumer")
        wait_until(lambda: len(list((WORK / "handed-on").glob("*.txt"))) == 2, "both jobs to be handed on")
        print("\n".join(line for line in (WORK / "consumer.log").read_text().splitlines() if line.startswith("took")))
        for text in sorted((WORK / "handed-on").glob("*.txt")):
            print(f"{text.relative_to(ROOT)}: {text.read_text().strip()[:60]} ...")
        say("5. What Prometheus scrapes from the server (README \"Operating it\"):")
        _show_metrics(port)
        say(f"Done: every job has its transcript in {WORK / 'transcripts'}; server log in {WORK / 'server.log'}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        for process in (emulator, consumer):
            process.terminate()
            process.wait(timeout=30)


def start_consumer(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    """examples/handoff_consumer.py, your application's stand-in: it writes each transcript's words to a file."""
    consumer = subprocess.Popen([sys.executable, "examples/handoff_consumer.py", "--port", str(port), "--database",
                                 str(WORK / "consumer.db"), "--output", str(WORK / "handed-on")], cwd=ROOT, env=env,
                                stdout=(WORK / "consumer.log").open("w"), stderr=subprocess.DEVNULL, text=True)
    wait_until(lambda: _answers(f"http://127.0.0.1:{port}/handoff"), "the example consumer to start")
    return consumer


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 405
    except requests.RequestException:
        return False


def _show_metrics(port: int) -> None:
    """A few lines of /metrics: the jobs, the notifications and the reconciler's last pass."""
    print(f"$ curl -s http://127.0.0.1:{port}/metrics | grep -E '^transcribe_(jobs|notifications_total|"
          "reconciler_last_pass_jobs|handoff_deliveries_total)'")
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    wanted = ("transcribe_jobs{", "transcribe_notifications_total{", "transcribe_reconciler_last_pass_jobs{",
              "transcribe_handoff_deliveries_total{")
    print("\n".join(line for line in text.splitlines() if line.startswith(wanted)), flush=True)


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).ok
    except requests.RequestException:
        return False


def _set_faults(batch_url: str, **faults: object) -> None:
    base = batch_url.rsplit("/v2", 1)[0]
    requests.put(f"{base}/_emulator/faults", json=faults, headers={"Authorization": f"Bearer {API_KEY}"},
                 timeout=10).raise_for_status()


def _remote_job(batch_url: str, job_id: str) -> dict:
    response = requests.get(f"{batch_url}/jobs/{job_id}", params={"wait": 0}, timeout=10,
                            headers={"Authorization": f"Bearer {API_KEY}"})
    return response.json()["job"]


def _remote_status(batch_url: str, job_id: str) -> str:
    return _remote_job(batch_url, job_id)["status"]


if __name__ == "__main__":
    main()
