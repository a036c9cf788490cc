"""deploy/: the systemd units pass `systemd-analyze verify`, the nginx site passes `nginx -t`, and through a real
nginx on loopback, 100 slow senders trickling headers and bodies do not keep real notifications from being
answered within a second (nginx buffers them; gunicorn's few threads never see a slow sender)."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import RUNTIME_PYTHON
from tests.integration.support import (
    ROOT,
    SECRET,
    Stack,
    free_port,
    submit_like_client,
    token_for,
    wait_for,
)

DEPLOY = ROOT / "deploy"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze missing")
def test_systemd_units_verify(tmp_path: Path) -> None:
    """Rendered with paths that exist here (this venv's python), else verify rejects the ExecStart."""
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        text = unit.read_text().replace("/srv/transcribe/.venv/bin/python", RUNTIME_PYTHON)
        (tmp_path / unit.name).write_text(text)
        assert "NoNewPrivileges=yes" in text or unit.suffix == ".timer"
    units = sorted(str(path) for path in tmp_path.iterdir())
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), result.stderr
    for name in ("transcribe-server.service", "transcribe-reconcile.service"):
        text = (DEPLOY / "systemd" / name).read_text()
        for option in ("ProtectSystem=strict", "ReadWritePaths=", "PrivateTmp=yes", "ProtectHome=yes"):
            assert option in text, (name, option)


def unit_settings(name: str) -> tuple[dict[str, str], list[str]]:
    """A service unit's Environment= assignments, and its ReadWritePaths."""
    lines = (DEPLOY / "systemd" / name).read_text().splitlines()
    environment = dict(item.split("=", 1) for line in lines if line.startswith("Environment=")
                       for item in shlex.split(line[len("Environment="):]))
    writable = [path for line in lines if line.startswith("ReadWritePaths=") for path in line.split("=", 1)[1].split()]
    return environment, writable


@pytest.mark.parametrize("name", ["transcribe-server.service", "transcribe-reconcile.service"])
def test_the_units_database_and_transcripts_are_absolute_paths_they_may_write(name: str) -> None:
    """Under ProtectSystem=strict only ReadWritePaths are writable: the default sqlite:///jobs.db, relative to
    WorkingDirectory, would be read-only, so the units name an absolute one (the environment file may override)."""
    environment, writable = unit_settings(name)
    database = environment["DATABASE_URL"]
    assert database.startswith("sqlite:////"), database
    for path in (database[len("sqlite:///"):], environment["TRANSCRIPTS_DIR"]):
        assert Path(path).is_absolute() and any(Path(path).is_relative_to(place) for place in writable), path
    assert unit_settings("transcribe-server.service")[0]["DATABASE_URL"] == database  # both read one database


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def render_nginx(tmp: Path, listen_port: int, upstream_port: int) -> Path:
    """deploy/nginx/transcribe.conf on our own ports and certificate, inside a minimal nginx.conf of our own."""
    cert, key = self_signed(tmp)
    site = (DEPLOY / "nginx" / "transcribe.conf").read_text()
    for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{listen_port} ssl;"),
                     ("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};"),
                     ("/etc/ssl/transcribe/fullchain.pem", str(cert)), ("/etc/ssl/transcribe/privkey.pem", str(key))):
        assert old in site, old
        site = site.replace(old, new)
    (tmp / "site.conf").write_text(site)
    temp = "".join(f"{kind}_temp_path {tmp / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = tmp / "nginx.conf"
    conf.write_text(f"""{'user root;' if os.geteuid() == 0 else ''}
worker_processes 1;
error_log {tmp / 'error.log'};
pid {tmp / 'nginx.pid'};
events {{ worker_connections 1024; }}
http {{
    access_log off;
    {temp}
    include {tmp / 'site.conf'};
}}
""")
    return conf


@pytest.mark.skipif(NGINX is None, reason="nginx missing: make test installs it")
def test_nginx_site_is_valid_and_above_the_body_limit(tmp_path: Path) -> None:
    conf = render_nginx(tmp_path, free_port(), free_port())
    result = subprocess.run([NGINX, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    site = (DEPLOY / "nginx" / "transcribe.conf").read_text()
    assert "proxy_request_buffering on;" in site and "X-Forwarded-For" in site
    limit = int(site.split("\n    client_max_body_size ", 1)[1].split("m;", 1)[0])
    assert limit > 512  # MAX_NOTIFICATION_MB's default: the server answers its own 413


@contextlib.contextmanager
def nginx(tmp: Path, upstream_port: int) -> Iterator[int]:
    port = free_port()
    conf = render_nginx(tmp, port, upstream_port)
    process = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(port), timeout=20, message="nginx to listen")
        yield port
    finally:  # SIGTERM, not SIGKILL: nginx's master stops its workers first, so none is left behind
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        wait_for(lambda: not _answers(port), timeout=10, message="nginx's workers to stop")


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def slow_sender(port: int, stop: threading.Event, body: bool) -> None:
    """Headers (and, with `body`, a body) one byte at a time, until told to stop."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    head = (b"POST /webhook?id=slowsender&status=success HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\n")
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw) as sock:
        if body:
            sock.sendall(head + b"\r\n")
        while not stop.wait(0.2):
            sock.sendall(b"{" if body else head[:1])


@pytest.mark.skipif(NGINX is None, reason="nginx missing: make test installs it")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_slow_senders_through_nginx_do_not_hold_up_real_notifications(stack: Stack, tmp_path: Path) -> None:
    stack.start_server(workers=1, TRUSTED_PROXIES=1)  # 4 threads: 100 slow senders would hold them all
    jobs = [submit_like_client(stack)[1] for _ in range(5)]
    (tmp_path / "nginx").mkdir()
    with nginx(tmp_path / "nginx", stack.server_port) as port:
        stop, ca = threading.Event(), str(tmp_path / "nginx" / "cert.pem")
        senders = [threading.Thread(target=slow_sender, args=(port, stop, n % 2 == 0), daemon=True)
                   for n in range(100)]
        try:
            for sender in senders:
                sender.start()
            for job_id in jobs:
                body = wait_for(lambda job_id=job_id: _transcript(stack, job_id), message="the emulator")
                answer = requests.post(f"https://127.0.0.1:{port}/webhook", params={"id": job_id, "status": "success"},
                                       data=body, headers={**token_for(stack, job_id),
                                                           "Content-Type": "application/json"},
                                       verify=ca, timeout=1.0)  # answered within a second, or this raises
                assert answer.status_code == 200, answer.text
            assert sum(sender.is_alive() for sender in senders) >= 90  # they were still trickling
            outside = requests.get(f"https://127.0.0.1:{port}/metrics", verify=ca, timeout=5)
            assert outside.status_code == 404  # only the webhook is forwarded
        finally:
            stop.set()
            for sender in senders:
                sender.join(timeout=10)
    assert all(stack.store().find(job_id).status == "done" for job_id in jobs)


def _transcript(stack: Stack, job_id: str) -> bytes | None:
    try:
        return stack.emulator.transcript_bytes(job_id)
    except KeyError:
        return None
